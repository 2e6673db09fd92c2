"""python-socketio's conventions, shared by the server and the client."""

from __future__ import annotations

import logging
from typing import Any


def args_of(data: Any) -> list:
    """The arguments an emit's ``data`` stands for: a tuple is several, None is none."""
    if data is None:
        return []
    if isinstance(data, tuple):
        return list(data)
    return [data]


def ack_value(args: tuple | list) -> Any:
    """What ``call`` returns for an acknowledgement: None, its one argument, or a tuple."""
    if not args:
        return None
    if len(args) == 1:
        return args[0]
    return tuple(args)


def setup_logger(name: str, option: Any) -> None:
    """The ``logger=`` option: True for INFO on stderr (if nothing logs yet), or a logger to copy."""
    log = logging.getLogger(name)
    if option is True:
        log.setLevel(logging.INFO)
        if not logging.root.handlers and not log.handlers:
            log.addHandler(logging.StreamHandler())
    elif isinstance(option, logging.Logger):
        log.handlers = option.handlers
        log.setLevel(option.level)
