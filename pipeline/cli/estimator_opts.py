"""`--estimator` and every backend's own options, read from the registry (`estimators.ESTIMATORS`) for the
commands that run an estimator (`extract`, `run`, `live`): a new backend's options appear without editing them."""

from __future__ import annotations

from collections.abc import Callable

import click

from estimators import DEFAULT, ESTIMATORS, option_flags, options_for


class EstimatorChoice(click.Choice):
    """The registry's names, read when the command line is parsed (so one added at run time is offered too)."""

    def __init__(self) -> None:
        super().__init__(list(ESTIMATORS))

    @property
    def choices(self) -> tuple[str, ...]:
        return tuple(ESTIMATORS)

    @choices.setter
    def choices(self, value) -> None:  # click.Choice.__init__ assigns it; the registry decides
        pass


def estimator_help(intro: str) -> str:
    return intro + " " + "; ".join(f"{n}: {cls.HELP}" for n, cls in ESTIMATORS.items() if cls.HELP) + "."


def _param(flag: str) -> str:
    return "estopt_" + flag.lstrip("-").replace("-", "_")


def estimator_options(f: Callable) -> Callable:
    """Adds one option per backend option (`EstimatorConfig.OPTIONS`); `given_options(kwargs)` reads them back."""
    for flag, (name, fname) in reversed(list(option_flags().items())):
        opt = ESTIMATORS[name].OPTIONS[fname]
        f = click.option(flag, _param(flag), default=None,
                         type=click.Choice(list(opt.choices)) if opt.choices else str,
                         help=f"[{name}] {opt.help}")(f)
    return f


def given_options(name: str, kwargs: dict) -> dict[str, object]:
    """Pops the backend options out of a command's `kwargs`: estimator `name`'s config field -> value."""
    given = {flag: v for flag in option_flags() if (v := kwargs.pop(_param(flag), None)) is not None}
    return options_for(name, given)


__all__ = ["DEFAULT", "EstimatorChoice", "estimator_help", "estimator_options", "given_options"]
