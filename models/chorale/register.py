"""Where the chorale harmonizer hears a melody and where its voices sound (pure: no torch, used on both sides of
the process boundary: the model in the harmony worker process, the chord tables in the real-time process)."""

from __future__ import annotations

LOWEST_HARMONY_NOTE = 28  # E1, a bass guitar's lowest string: no harmony voice sounds below it


def fold(pitch: int, shift: int, soprano_range: tuple[int, int]) -> int:
    """The octave shift that brings `pitch` into the soprano range: `shift` while it still does (no jump back and
    forth around a range edge), else the whole-octave shift nearest to it."""
    lo, hi = soprano_range
    if lo <= pitch + shift <= hi:
        return shift
    options = [12 * k for k in range(-11, 12) if lo <= pitch + 12 * k <= hi]
    return min(options, key=lambda s: abs(s - shift))


def max_drop(bass_range: tuple[int, int]) -> int:
    """How far a low melody may take the harmony down: while the middle of the bass's range stays at or above E1
    (one octave for the chorale ranges: bass 36..66 -> 24..54)."""
    bass_lo, bass_hi = bass_range
    return 12 * max(0, ((bass_lo + bass_hi) // 2 - LOWEST_HARMONY_NOTE) // 12)


def register(pitch: int | None, shift: int, drop_limit: int) -> int | None:
    """Where a voice sounds for the player's melody (model space -> MIDI).

    A melody above the soprano range leaves the voices in their own ranges (under it, further away) instead of
    lifting them with it. A melody below it takes them down with it by whole octaves, every voice in its own
    range shifted alike (the voicing and the voice leading stay as the model made them), but by `drop_limit` at
    most: one octave, so a melody in C3..B3 has its harmony under it and one lower still keeps that register (the
    harmony then sits around and above it, not in the sub-bass). No voice sounds below E1
    (`LOWEST_HARMONY_NOTE`): a note that would is raised an octave.
    """
    if pitch is None:
        return None
    pitch -= min(max(shift, 0), drop_limit)
    while pitch < LOWEST_HARMONY_NOTE:
        pitch += 12
    return min(pitch, 127)
