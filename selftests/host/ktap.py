# SPDX-License-Identifier: GPL-2.0
"""KTAP as kselftest, its runner and KUnit print it: a plan, numbered
results with optional directives (SKIP), "Bail out!", and subtests
indented (KUnit) or wrapped in "# " comments (the kselftest runner)."""

import re
from pathlib import Path
from dataclasses import dataclass, field

RESULT = re.compile(r"^(ok|not ok) (\d+)(?: -)? ?([^#]*?)\s*(?:#\s*(.*))?$")
PLAN = re.compile(r"^1\.\.(\d+)(?:\s*#\s*(.*))?$")


@dataclass
class Result:
    ok: bool
    number: int
    name: str
    directive: str = ""

    @property
    def skipped(self):
        return self.directive.upper().startswith("SKIP")


@dataclass
class Report:
    """One level of KTAP: its plan and results, in order."""
    plan: int | None = None
    plan_directive: str = ""
    results: list = field(default_factory=list)
    bail_out: str | None = None

    @property
    def skipped_all(self):
        return self.plan == 0 and self.plan_directive.upper().startswith("SKIP")

    @property
    def failed(self):
        return [r for r in self.results if not r.ok]

    @property
    def passed(self):
        return [r for r in self.results if r.ok and not r.skipped]

    @property
    def skipped(self):
        return [r for r in self.results if r.skipped]

    def problems(self):
        """What makes this a failed run: no plan, a bail out, a failed
        test, a count of results other than the plan, numbers out of
        order. Empty if it passed (skips included)."""
        found = []
        if self.bail_out:
            found.append(self.bail_out)
        if self.plan is None:
            found.append("no plan (1..N)")
        elif len(self.results) != self.plan:
            found.append(f"plan says {self.plan} tests, {len(self.results)} reported")
        found += [f"not ok {r.number} {r.name}" for r in self.failed]
        numbers = [r.number for r in self.results]
        if numbers != list(range(1, len(numbers) + 1)):
            found.append(f"test numbers out of order: {numbers}")
        return found


def parse(text, indent=""):
    """The KTAP at one level of `text`: lines that start with `indent`
    (and no further whitespace), with `indent` taken off."""
    report = Report()
    for line in text.splitlines():
        line = line.rstrip()
        if not line.startswith(indent):
            continue
        line = line[len(indent):]
        if line[:1].isspace():
            continue
        if m := RESULT.match(line):
            report.results.append(Result(m[1] == "ok", int(m[2]), m[3].strip(), (m[4] or "").strip()))
        elif (m := PLAN.match(line)) and report.plan is None:
            report.plan, report.plan_directive = int(m[1]), (m[2] or "").strip()
        elif line.startswith("Bail out!"):
            report.bail_out = line
    return report


def inner(text):
    """The output of the tests the kselftest runner ran: it prints each
    test's own lines behind "# "."""
    return "\n".join(line[2:] for line in text.splitlines() if line.startswith("# "))


# The cases of the driver's own KUnit suite (`#[kunit_tests(rust_balloon)]`):
# the `#[test]` functions of rust_balloon.rs, counted from the source so
# that the three tests running the suite expect a new case (a count written
# out in each was left behind in one of them once).
DRIVER_KUNIT_CASES = len(re.findall(
    r"^\s*#\[test\]", (Path(__file__).resolve().parents[2] / "rust_balloon.rs").read_text(), re.M))
