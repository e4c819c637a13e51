"""The demo's progress lines: `[demo:STAGE] message`, flushed at once (the stages run for minutes)."""


def log(stage: str, message: str) -> None:
    print(f"[demo:{stage}] {message}", flush=True)
