# SPDX-License-Identifier: GPL-2.0
"""The KTAP parser the other tests rely on: a failing case, a missing result
or a bail out must fail (no guest needed)."""

import ktap

KUNIT_FAILED = """KTAP version 1
1..1
    KTAP version 1
    # Subtest: rust_balloon
    1..3
    ok 1 target_rounds_up_to_whole_pages
        # backoff_doubles_up_to_its_cap: ASSERTION FAILED at rust_balloon.rs:1
    not ok 2 backoff_doubles_up_to_its_cap
    ok 3 hint_commands_move_through_their_states # SKIP not here
# rust_balloon: pass:1 fail:1 skip:1 total:3
not ok 1 rust_balloon
"""

RUNNER_OK = """TAP version 13
1..1
# timeout set to 120
# selftests: rust_balloon: rust_balloon_test.sh
# TAP version 13
# 1..2
# ok 1 module loads
# ok 2 sysfs bind takes it again # SKIP no debugfs
# # Totals: pass:1 fail:0 xfail:0 xpass:0 skip:1 error:0
ok 1 selftests: rust_balloon: rust_balloon_test.sh
"""


def test_a_failed_kunit_case_fails_both_levels():
    suite, cases = ktap.parse(KUNIT_FAILED), ktap.parse(KUNIT_FAILED, "    ")
    assert suite.problems() == ["not ok 1 rust_balloon"]
    assert cases.problems() == ["not ok 2 backoff_doubles_up_to_its_cap"]
    assert [r.number for r in cases.skipped] == [3]
    assert len(cases.passed) == 1


def test_runner_output_and_the_tests_own_ktap():
    runner, test = ktap.parse(RUNNER_OK), ktap.parse(ktap.inner(RUNNER_OK))
    assert not runner.problems() and not test.problems()
    assert test.plan == 2 and len(test.passed) == 1 and len(test.skipped) == 1


def test_missing_results_bail_out_and_skip_all():
    short = ktap.parse("1..3\nok 1 a\nok 2 b\n")
    assert short.problems() == ["plan says 3 tests, 2 reported"]
    bailed = ktap.parse("1..2\nok 1 a\nBail out! device gone\n")
    assert "Bail out! device gone" in bailed.problems()
    assert ktap.parse("ok 1 a\n").problems() == ["no plan (1..N)"]
    assert ktap.parse("1..2\nok 2 b\nok 1 a\n").problems() == ["test numbers out of order: [2, 1]"]
    skipped = ktap.parse("TAP version 13\n1..0 # SKIP no virtio balloon device\n")
    assert skipped.skipped_all and not skipped.problems()
