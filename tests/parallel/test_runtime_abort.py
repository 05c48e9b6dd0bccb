"""The relay that turns an abort of JAX's distributed runtime into one line, on the log text
JAX 0.10 writes (the coordinator killed; a process index given twice)."""

from fnrl.parallel.runtime_abort import HOLD_SECONDS, Relay

_COORDINATOR_KILLED = """\
W1207 22:02:18.971489    8482 preemption_sync_manager.cc:147] Failed to retrieve preemption notice from coordination service: UNAVAILABLE: Socket closed
Additional GRPC error information from remote target coordination_service while calling /xla.coordination.CoordinationService/GetKeyValue:
E1207 22:01:14.211189    7535 coordination_service_agent.cc:289] Polled an error from coordination service (this can be an error from this or another task).
F1207 22:01:14.211297    7535 client.h:80] Terminating process because the JAX distributed service detected fatal errors. This most likely indicates that another task died; see the other task logs for more details. Disable Python buffering, i.e. `python -u`, to be sure to see all the previous output. absl::Status: UNAVAILABLE: Failed to send RPC to coordination service. Either the leader task was preempted/died/restarted unexpectedly or this task is experiencing network issues.
Additional GRPC error information from remote target coordination_service while calling /xla.coordination.CoordinationService/PollForError:
*** Check failure stack trace: ***
    @     0x7fd787e40634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
    @     0x7fd78f2a71f5  (unknown)
"""  # noqa: E501
_INDEX_TWICE = """\
W1207 22:05:18.112659    9613 coordination_service.cc:391] [10492271500422548381] ConnectAfterBarrierPasses: incarnation=2346361792897003085
F1207 22:05:18.113827    9300 client.h:80] Terminating process because the JAX distributed service detected fatal errors. This most likely indicates that another task died; see the other task logs for more details. absl::Status: ALREADY_EXISTS: Aborted connect attempt as there is a request from a newer incarnation.

RPC: /xla.coordination.CoordinationService/RegisterTask [type.googleapis.com/tensorflow.CoordinationServiceError='']
*** Check failure stack trace: ***
    @     0x7f99bd240634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
"""  # noqa: E501


def _relayed(text: str, process_id: int = 1, now: float = 0.0) -> str:
    relay = Relay(process_id)
    return "".join(relay.feed(line, now) for line in text.splitlines(keepends=True))


def test_the_coordinators_death_is_one_line():
    assert _relayed("step 80 ...\n" + _COORDINATOR_KILLED) == (
        "step 80 ...\n"
        "fnrl.train: error: the coordinator (process 0) stopped or cannot be reached; JAX's "
        "distributed runtime ended process 1 (UNAVAILABLE: Failed to send RPC to coordination "
        "service)\n"
    )


def test_a_process_index_given_twice_is_one_line_naming_the_flag():
    assert _relayed(_INDEX_TWICE, process_id=0) == (
        "fnrl.train: error: a second process joined as process 0 (--process-id given twice?); "
        "JAX's distributed runtime ended process 0 (ALREADY_EXISTS: Aborted connect attempt as "
        "there is a request from a newer incarnation.)\n"
    )


def test_the_runtimes_other_log_lines_pass_on_after_the_hold_in_their_order():
    warning = _COORDINATOR_KILLED.splitlines(keepends=True)[0]
    relay = Relay(1)
    assert relay.feed(warning, 10.0) == ""
    assert relay.feed("a line of fnrl\n", 10.5) == ""  # kept behind the warning
    assert relay.due(10.0 + HOLD_SECONDS / 2) == ""
    assert relay.due(10.0 + HOLD_SECONDS) == warning + "a line of fnrl\n"
    assert relay.feed("the next line\n", 13.0) == "the next line\n"
    assert relay.feed(warning, 14.0) == "" and relay.close() == warning


def test_unfinished_lines_pass_at_once_unless_they_may_start_a_log_line():
    relay = Relay(1)
    assert relay.passes_now("\r 40%|####      | 400/1000")  # a progress bar
    assert not relay.passes_now("W12")
    assert not relay.passes_now("E1207 22:01")
    assert relay.passes_now("Warning: ")
