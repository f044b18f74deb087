"""Workflow files for tests and benchmarks that run the bot as processes: each is the source of
a file to put in a ``workflows.dirs`` folder (the processes import it from there, as an
operator's workflow)."""

from __future__ import annotations

from typing import Final

__all__ = ["STEPPER"]

# /stepper steps:N pause:S: N recorded steps of S seconds each; each step's value names the
# process that ran it (which worker ran which step, across a kill and a resume).
STEPPER: Final = """
import asyncio
import os

from notifier import Context, workflow


@workflow(description="Steps slowly", max_steps=lambda steps=3, pause=0.05: steps)
async def stepper(ctx: Context, steps: int = 3, pause: float = 0.05) -> dict:
    ran = []
    for index in range(steps):

        async def one(index: int = index) -> dict:
            await asyncio.sleep(pause)
            return {"pid": os.getpid(), "index": index}

        ran.append(await ctx.step(f"page:{index}", one))
        ctx.progress(stage="stepping", fraction=(index + 1) / steps)
    return {"steps": len(ran), "pids": sorted({step["pid"] for step in ran})}
"""
