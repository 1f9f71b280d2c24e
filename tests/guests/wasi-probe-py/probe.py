"""Reports, as labels, what the host's deny-all WASI context lets a Python
plugin reach at run time: files, directories, environment, network, the
clocks, the random sources, modules not imported at build time, and
standard output.

componentize-py pre-initialises the interpreter at build time, when the
app's directory and the standard library are readable; the labels show what
is left of that when the host runs the component.

The `wait` config key makes it wait instead: `sleep` sleeps five seconds,
`short-sleep` sleeps 100 ms and reports the clocks, `busy-wait` spins until
the monotonic clock has moved by a second.
"""

import importlib
import os
import random
import time

import wit_world
from wit_world.imports import types

try:
    import socket
except ImportError:  # a CPython build for WASI may leave it out
    socket = None


def outcome(probe):
    """`allowed`, or `denied:` and the exception's type."""
    try:
        probe()
    except Exception as error:  # noqa: BLE001 - any failure is a denial here
        return f"denied:{type(error).__name__}"
    return "allowed"


def read_file():
    with open("probe.py") as source:
        source.read()


def connect():
    if socket is None:
        raise ImportError("no socket module")
    # An address, not a name, so this tries the TCP connection itself.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as connection:
        connection.settimeout(1)
        connection.connect(("127.0.0.1", 9))


def resolve():
    if socket is None:
        raise ImportError("no socket module")
    socket.getaddrinfo("example.com", 443)


def time_and_chance():
    """The clocks and the random sources, as labels."""
    return [
        f"wall:{time.time_ns()}",
        f"mono:{time.monotonic_ns()}",
        f"urandom:{os.urandom(8).hex()}",
        f"random:{random.getrandbits(64):016x}",
    ]


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return types.Manifest(
            id="fixture-wasi-probe-py",
            version="0.1.0",
            summary="Reports what WASI lets a Python plugin reach (test fixture)",
            purposes=["essential.service.operations"],
            fields=[],
            capabilities=[types.Capability.ADD_LABEL],
            config=[
                types.ConfigKey(
                    name="wait",
                    description="sleep, short-sleep or busy-wait",
                    required=False,
                    default_value=None,
                )
            ],
            # What each probe may report: `allowed`, or `denied:` and the
            # exception's type; the size of the environment; `slept` and
            # `clock moved` after a wait. The readings of the clocks and of
            # chance (`wall:`, `mono:`, `urandom:`, `random:`, `slept:`) are
            # long numbers and hex: no rule admits them, so the host refuses
            # them, and a test reads them from the refused actions.
            labels=[
                rule
                for probe in ("file", "listdir", "connect", "dns", "late-import")
                for rule in (
                    types.LabelRule_Exact(f"{probe}:allowed"),
                    types.LabelRule_Pattern(
                        types.LabelPattern(
                            prefix=f"{probe}:denied:",
                            alphabet=types.LabelAlphabet.LETTERS,
                            max_length=32,
                        )
                    ),
                )
            ]
            + [
                types.LabelRule_Pattern(
                    types.LabelPattern(
                        prefix="env:", alphabet=types.LabelAlphabet.DIGITS, max_length=4
                    )
                ),
                types.LabelRule_Exact("slept"),
                types.LabelRule_Exact("clock moved"),
            ],
        )

    def handle(self, event):
        wait = dict(event.config).get("wait")
        if wait == "sleep":
            time.sleep(5)
            return [types.Action_AddLabel("slept")]
        if wait == "short-sleep":
            before = time.monotonic_ns()
            time.sleep(0.1)
            slept = time.monotonic_ns() - before
            return [types.Action_AddLabel(f"slept:{slept}")] + [
                types.Action_AddLabel(label) for label in time_and_chance()
            ]
        if wait == "busy-wait":
            until = time.monotonic() + 1
            while time.monotonic() < until:
                pass
            return [types.Action_AddLabel("clock moved")]
        print("probe says hello on stdout")
        labels = [
            "file:" + outcome(read_file),
            "listdir:" + outcome(lambda: os.listdir("/")),
            f"env:{len(os.environ)}",
            "connect:" + outcome(connect),
            "dns:" + outcome(resolve),
            # Not imported at build time: it would have to be read from a
            # filesystem now.
            "late-import:" + outcome(lambda: importlib.import_module("fractions")),
        ] + time_and_chance()
        return [types.Action_AddLabel(label) for label in labels]
