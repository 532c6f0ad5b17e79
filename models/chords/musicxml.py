"""A lead sheet's melody and chord symbols from MusicXML (.mxl or .xml), read directly: much faster than a
full score parser, and all the chord model needs (first part, first voice, <harmony> symbols, meter, pickup)."""

from __future__ import annotations

import zipfile
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from xml.etree import ElementTree

from models.chords import vocab

_STEPS = {"C": 0, "D": 2, "E": 4, "F": 5, "G": 7, "A": 9, "B": 11}


@dataclass
class LeadSheet:
    notes: list[tuple[Fraction, Fraction, int]]  # (start, end, pitch) in quarter notes
    symbols: list[tuple[Fraction, int]]  # (start, chord class or vocab.NO_CHORD)
    beats: int
    beat_type: int
    pickup: Fraction  # length of an incomplete first bar (0: none), in quarter notes


def _root(element: ElementTree.Element, step_tag: str, alter_tag: str) -> int:
    step = element.findtext(step_tag, "C").strip()
    alter = float(element.findtext(alter_tag, "0") or 0)
    return (_STEPS.get(step[:1].upper(), 0) + round(alter)) % 12


def _symbol(harmony: ElementTree.Element) -> int | None:
    kind = (harmony.findtext("kind") or "major").strip()
    root = harmony.find("root")
    if kind == "none" or root is None:
        return vocab.NO_CHORD
    quality = vocab.parse_quality(kind)
    if quality is None:
        text = (harmony.find("kind").get("text") if harmony.find("kind") is not None else "") or ""
        quality = vocab.parse_quality(text) or ("m" if "min" in kind else "")
    return vocab.chord_index(_root(root, "root-step", "root-alter"), quality)


def _root_xml(path: Path) -> ElementTree.Element:
    if path.suffix == ".mxl":
        with zipfile.ZipFile(path) as archive:
            name = next(n for n in archive.namelist() if not n.startswith("META-INF") and n.endswith(".xml"))
            return ElementTree.fromstring(archive.read(name))
    return ElementTree.parse(path).getroot()


def read_lead_sheet(path: Path) -> LeadSheet:
    """The first part's top voice and its chord symbols; ValueError if the file holds no part."""
    part = _root_xml(path).find("part")
    if part is None:
        raise ValueError(f"{path}: no <part>")
    divisions, beats, beat_type = 1, 4, 4
    notes: list[tuple[Fraction, Fraction, int]] = []
    symbols: list[tuple[Fraction, int]] = []
    pickup = Fraction(0)
    bar_start = Fraction(0)
    for index, measure in enumerate(part.findall("measure")):
        now = Fraction(0)
        longest = Fraction(0)
        for element in measure:
            tag = element.tag
            if tag == "attributes":
                divisions = int(element.findtext("divisions") or divisions)
                beats = int(element.findtext("time/beats") or beats) if element.find("time") is not None else beats
                beat_type = int(element.findtext("time/beat-type") or beat_type)
            elif tag == "harmony":
                symbol = _symbol(element)
                offset = Fraction(int(element.findtext("offset") or 0), divisions)
                if symbol is not None:
                    symbols.append((bar_start + now + offset, symbol))
            elif tag in ("backup", "forward"):
                step = Fraction(int(element.findtext("duration") or 0), divisions)
                now += -step if tag == "backup" else step
            elif tag == "note":
                if element.find("grace") is not None:
                    continue
                length = Fraction(int(element.findtext("duration") or 0), divisions)
                if element.find("chord") is not None:  # a chord tone with the previous note: keep the top
                    pitch = element.find("pitch")
                    if pitch is not None and notes and _pitch(pitch) > notes[-1][2]:
                        notes[-1] = (notes[-1][0], notes[-1][1], _pitch(pitch))
                    continue
                voice = element.findtext("voice") or "1"
                pitch = element.find("pitch")
                if voice.strip() == "1" and pitch is not None:
                    start = bar_start + now
                    tied = any(t.get("type") == "stop" for t in element.findall("tie"))
                    if tied and notes and notes[-1][2] == _pitch(pitch) and notes[-1][1] == start:
                        notes[-1] = (notes[-1][0], start + length, notes[-1][2])
                    else:
                        notes.append((start, start + length, _pitch(pitch)))
                now += length
            longest = max(longest, now)
        bar = Fraction(4 * beats, beat_type)
        if index == 0 and 0 < longest < bar:
            pickup = longest
        bar_start += longest if longest > 0 else bar
    return LeadSheet(notes, symbols, beats, beat_type, pickup)


def _pitch(pitch: ElementTree.Element) -> int:
    return 12 * (int(pitch.findtext("octave") or 4) + 1) + _root(pitch, "step", "alter")
