"""The port chooser: pick the input, then the output, one key each; the runtime re-opens them (ChoosePorts)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option

from companion.live.intents import ChoosePorts

VIRTUAL_CHOICE = "(virtual port)"
OWN_PORT_MARKERS = ("companion in", "companion out", "companion-probe")
MAX_ONE_KEY = 9


def named_ports(backends: Sequence[Any], backend: str | None, direction: str) -> tuple[str, list[str]]:
    """(backend used, port names) for `direction` "in" (sources we listen to) or "out" (destinations), ours left out."""
    usable = [b for b in backends if getattr(b, "usable", False)]
    chosen = next((b for b in usable if b.name == backend), usable[0] if usable else None)
    if chosen is None:
        return backend or "?", []
    names = chosen.inputs if direction == "in" else chosen.outputs
    return chosen.name, [n for n in names if not any(m in n.lower() for m in OWN_PORT_MARKERS)]


class PortsScreen(ModalScreen[ChoosePorts | None]):
    """Two steps: the input port, then the output port; 0 is the virtual port, 1..9 a named one, Esc cancels."""

    BINDINGS = [Binding("escape", "cancel", "cancel", show=False)] + [
        Binding(str(n), f"pick({n})", show=False) for n in range(MAX_ONE_KEY + 1)
    ]

    def __init__(self, backend: str | None, list_backends: Callable[[], Sequence[Any]]) -> None:
        super().__init__()
        self.backend = backend
        self._list_backends = list_backends
        self._backends: Sequence[Any] = []
        self._step = "in"
        self._in_port: str | None = None
        self._choices: list[str | None] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="ports-body"):
            yield Static("Looking for MIDI ports…", id="ports-title")
            yield OptionList(id="ports-list")
            yield Static("0-9 or Enter: choose   Esc: cancel", classes="hint")

    def on_mount(self) -> None:
        self.load_ports()

    @work(thread=True, exclusive=True)
    def load_ports(self) -> None:
        """Probing the backends talks to ALSA/JACK: off the UI's loop, and never on a runtime thread."""
        try:
            backends = self._list_backends()
        except Exception as err:  # any backend failure becomes a message on screen, never a traceback
            self.app.call_from_thread(self._show_error, f"could not list MIDI ports: {err}")
            return
        self.app.call_from_thread(self._show_backends, backends)

    def _show_error(self, message: str) -> None:
        self.query_one("#ports-title", Static).update(message)

    def _show_backends(self, backends: Sequence[Any]) -> None:
        self._backends = backends
        self._show_step()

    def _show_step(self) -> None:
        backend, names = named_ports(self._backends, self.backend, self._step)
        self.backend = backend
        what = "INPUT (where your playing comes from)" if self._step == "in" else "OUTPUT (where answers go)"
        self.query_one("#ports-title", Static).update(f"Choose the {what} — backend {backend}")
        self._choices = [None, *names]
        options = self.query_one("#ports-list", OptionList)
        options.clear_options()
        for index, name in enumerate(self._choices):
            label = name if name is not None else f"{VIRTUAL_CHOICE} Companion {'In' if self._step == 'in' else 'Out'}"
            key = f"{index}" if index <= MAX_ONE_KEY else " "
            options.add_option(Option(f"{key}  {label}"))
        options.highlighted = 0
        options.focus()

    def action_pick(self, index: int) -> None:
        if index < len(self._choices):
            self._choose(self._choices[index])

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self._choose(self._choices[event.option_index])

    def _choose(self, port: str | None) -> None:
        if self._step == "in":
            self._in_port = port
            self._step = "out"
            self._show_step()
            return
        self.dismiss(ChoosePorts(self._in_port, port, self.backend))

    def action_cancel(self) -> None:
        self.dismiss(None)
