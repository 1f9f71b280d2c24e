"""Reports, as labels, what the host's deny-all WASI context lets a Python
plugin reach at run time: files, directories, environment, network, the
clock, modules not imported at build time, and standard output.

componentize-py pre-initialises the interpreter at build time, when the
app's directory and the standard library are readable; the labels show what
is left of that when the host runs the component.
"""

import importlib
import os
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


class WitWorld(wit_world.WitWorld):
    def describe(self):
        return types.Manifest(
            id="fixture-wasi-probe-py",
            version="0.1.0",
            summary="Reports what WASI lets a Python plugin reach (test fixture)",
            purposes=["essential.service.operations"],
            fields=[],
            capabilities=[types.Capability.ADD_LABEL],
            config=[],
            # What each probe may report: `allowed`, or `denied:` and the
            # exception's type; the size of the environment; the clock.
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
                types.LabelRule_Exact("clock:ok"),
                types.LabelRule_Exact("clock:odd"),
            ],
        )

    def handle(self, event):
        print("probe says hello on stdout")
        # A year after 2020 and before 2200: a real, harmless clock.
        clock = "clock:ok" if 1_577_836_800 < time.time() < 7_258_118_400 else "clock:odd"
        labels = [
            "file:" + outcome(read_file),
            "listdir:" + outcome(lambda: os.listdir("/")),
            f"env:{len(os.environ)}",
            "connect:" + outcome(connect),
            "dns:" + outcome(resolve),
            # Not imported at build time: it would have to be read from a
            # filesystem now.
            "late-import:" + outcome(lambda: importlib.import_module("fractions")),
            clock,
        ]
        return [types.Action_AddLabel(label) for label in labels]
