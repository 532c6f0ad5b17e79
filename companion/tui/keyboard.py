"""The computer-keyboard piano: two rows of letters as a MIDI input source, with octave up and down."""

from __future__ import annotations

from rich.text import Text
from textual.widget import Widget

# Musical typing as in most DAWs: the home row plays the white keys, the row above it the black keys.
KEY_OFFSETS: dict[str, int] = {
    "a": 0, "w": 1, "s": 2, "e": 3, "d": 4, "f": 5, "t": 6, "g": 7, "y": 8, "h": 9, "u": 10, "j": 11,
    "k": 12, "o": 13, "l": 14, "p": 15, ";": 16, "'": 17,
}
OCTAVE_DOWN_KEY = "z"
OCTAVE_UP_KEY = "x"
DEFAULT_OCTAVE = 4  # the home row's "a" is C4 = 60
MIN_OCTAVE, MAX_OCTAVE = -1, 9  # C-1 = 0 .. C9 = 120; keys past 127 play nothing
# Terminals report key presses, not releases: a note sounds this long after its last press (or auto-repeat).
# Longer than the usual auto-repeat delay, so a held key keeps one note sounding instead of re-striking it.
DEFAULT_GATE_NS = 550_000_000
NOTE_NAMES = ("C", "C#", "D", "D#", "E", "F", "F#", "G", "G#", "A", "A#", "B")


def note_name(pitch: int) -> str:
    """MIDI pitch as a name with octave, middle C = C4."""
    return f"{NOTE_NAMES[pitch % 12]}{pitch // 12 - 1}"


class KeyboardPiano:
    """Turns key presses into raw MIDI bytes; every note-on it makes gets its note-off (gate, panic or quit)."""

    def __init__(self, channel: int = 0, velocity: int = 100, gate_ns: int = DEFAULT_GATE_NS) -> None:
        self.channel = channel
        self.velocity = velocity
        self.gate_ns = gate_ns
        self.octave = DEFAULT_OCTAVE
        self._release_at_ns: dict[int, int] = {}  # sounding pitch -> when its note-off is due

    @property
    def sounding(self) -> list[int]:
        return sorted(self._release_at_ns)

    def pitch_for(self, character: str) -> int | None:
        offset = KEY_OFFSETS.get(character)
        if offset is None:
            return None
        pitch = 12 * (self.octave + 1) + offset
        return pitch if 0 <= pitch <= 127 else None

    def press(self, character: str, now_ns: int) -> list[list[int]]:
        """A piano key was pressed (or auto-repeated): a note-on, or nothing if it is already sounding."""
        pitch = self.pitch_for(character)
        if pitch is None:
            return []
        already = pitch in self._release_at_ns
        self._release_at_ns[pitch] = now_ns + self.gate_ns
        return [] if already else [[0x90 | self.channel, pitch, self.velocity]]

    def due(self, now_ns: int) -> list[list[int]]:
        """Note-offs for the notes whose gate has passed."""
        ended = [pitch for pitch, at_ns in self._release_at_ns.items() if at_ns <= now_ns]
        for pitch in ended:
            del self._release_at_ns[pitch]
        return [[0x80 | self.channel, pitch, 0] for pitch in sorted(ended)]

    def release_all(self) -> list[list[int]]:
        """Note-offs for everything sounding (panic, octave change is not one: notes keep their pitch)."""
        offs = [[0x80 | self.channel, pitch, 0] for pitch in sorted(self._release_at_ns)]
        self._release_at_ns.clear()
        return offs

    def shift_octave(self, steps: int) -> int:
        self.octave = max(MIN_OCTAVE, min(MAX_OCTAVE, self.octave + steps))
        return self.octave


class KeyboardPianoView(Widget):
    """One line: the octave the letters play and the notes the computer keyboard holds now."""

    DEFAULT_CSS = "KeyboardPianoView { height: 1; }"

    def __init__(self, piano: KeyboardPiano, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.piano = piano
        self._shown: tuple[int, list[int]] | None = None

    def update_if_changed(self) -> None:
        state = (self.piano.octave, self.piano.sounding)
        if state != self._shown:
            self._shown = state
            self.refresh()

    def render(self) -> Text:
        low = 12 * (self.piano.octave + 1)
        text = Text()
        text.append(" keys ", style="bold")
        text.append(f"A={note_name(low)}..'={note_name(min(127, low + 17))}", style="cyan")
        text.append(f"  octave {self.piano.octave} (z/x)  ", style="dim")
        sounding = self.piano.sounding
        text.append(" ".join(note_name(p) for p in sounding) if sounding else "-", style="bold cyan")
        return text
