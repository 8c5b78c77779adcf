"""The mock's control plane as the contracts use it: on a target others may be using too, it puts
back what the contracts changed and refuses what cannot be put back."""

from __future__ import annotations

from typing import Any

from sd35_twin.mockserver.testing import MockControl

from .targets import SharedTarget


class ContractControl(MockControl):
    """``MockControl`` that remembers the configuration it ``found`` and every key ``configure``
    changed, so that ``restore`` puts back exactly those values. (PATCHing back the whole GET answer
    would not do: a PATCH refuses its start-up settings, and its API keys are redacted.)

    Where the suite does not ``own`` the target (a URL without ``--reset-target``), ``reset`` and
    ``advance`` raise ``SharedTarget``, a skip: they would drop or age every job on the target,
    other users' too, and neither can be undone.
    """

    def __init__(self, url: str, *, owned: bool, token: str | None = None):
        super().__init__(url, token=token)
        self.owned = owned
        self.found = self.config()
        self.changed: set[str] = set()

    def configure(self, **changes: Any) -> dict:
        self.changed.update(changes)
        return super().configure(**changes)

    def restore(self) -> None:
        """Put every key ``configure`` changed back to the value it had when found."""
        if self.changed:
            super().configure(**{key: self.found[key] for key in self.changed})
            self.changed.clear()

    def reset(self) -> None:
        self._refuse_unless_owned("resets the target, dropping every job on it")
        super().reset()

    def advance(self, seconds: float) -> float:
        self._refuse_unless_owned("moves the target's clock on, ageing every job on it")
        return super().advance(seconds)

    def _refuse_unless_owned(self, what: str) -> None:
        if not self.owned:
            raise SharedTarget(f"needs --reset-target: it {what}, other users' too ({self.url})")
