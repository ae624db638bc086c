"""After a change: the switch-over onto a proxy instance that answers, and the smoke check through the front."""
from __future__ import annotations

from pyinfra import host, logger
from pyinfra.api.exceptions import OperationError

from gateway.commands import smoke_command, switch_command
from gateway.settings import Settings

READY_TIMEOUT = 180  # seconds: a cold proxy start imports for ~10 s, a slow host takes longer


def _run(command: str) -> tuple[bool, str]:
    arguments = {k: v for k, v in (host.current_op_global_arguments or {}).items() if k in ("_sudo", "_sudo_user")}
    status, output = host.run_shell_command(command, **arguments)
    return status, "\n".join(line.line for line in output.combined_lines)


def verify_gateway(settings: Settings) -> None:
    """Raise OperationError with the failed check and the journal lines that explain it."""
    ok, report = _run(smoke_command(settings, settings.local_url, READY_TIMEOUT))
    if ok:
        host.log(f"gateway verified:\n{report}")
        return
    _, journal = _run("journalctl -u 'litellm@*' -u litellm-front -n 40 --no-pager -o short-iso")
    host.log(
        f"the gateway does not work:\n{report}\n--- last lines of the gateway's journal ---\n{journal}",
        log_func=logger.error,
    )
    raise OperationError(f"the gateway on {host.name} failed verification: "
                         f"{report.splitlines()[-1] if report else 'no output'}")


def switch_over(settings: Settings, release: str, why: str, inputs: tuple[str, ...] = (), roll: bool = False) -> None:
    """Move traffic onto an instance of `release` with the files as they are now (on_host/switch.py),
    then verify through the front. A refused switch leaves traffic where it was: OperationError names why.
    With `roll` (a fleet gateway that was serving), it takes its turn in the fleet's roll.

    When the serving instance already runs `release` with the files as they are now (a deploy that
    put drifted files back as it read them) and answers, nothing is switched or drained: verified only."""

    def needed() -> bool:
        if not inputs:
            return True
        current, report = _run(switch_command(settings, release, READY_TIMEOUT, why, inputs, unless_serving=True))
        if current:
            host.log(f"switch-over not needed:\n{report}")
        return not current

    def change() -> None:
        _switch_and_verify(settings, release, why)

    if roll:
        from gateway.rolling import in_turn  # pyinfra's state: only inside a deploy

        changed = in_turn(settings, change, needed=needed)
    else:
        changed = needed()
        if changed:
            change()
    if not changed:
        verify_gateway(settings)


def _switch_and_verify(settings: Settings, release: str, why: str) -> None:
    ok, report = _run(switch_command(settings, release, READY_TIMEOUT, why))
    if not ok:
        host.log(f"switch-over refused, nothing changed for clients:\n{report}", log_func=logger.error)
        failed = [line for line in report.splitlines() if line.startswith("FAIL")]
        raise OperationError(f"{host.name}: {failed[-1][5:] if failed else report[-300:]}")
    host.log(f"switch-over:\n{report}")
    verify_gateway(settings)
