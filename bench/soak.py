"""Soak the runtime under faults (issue 11). Prints a table; asserts nothing.

    .venv/bin/python bench/soak.py [--scopes 100] [--messages 5] [--seed 11]

100 scopes x 5 messages through the runtime (test chat → Bot → App Server → scripted
model) with faults at random: the App Server SIGKILLed twice, 10 % model 500s, 5 % model
hangs, 20 % slow posts, 5 % posts answered 429 with a Retry-After, Stop and Reset pressed
mid-turn. Lost, answered twice and crossed must all be 0. See lettabot/testing/soak.py.

Runs offline: the real `letta` CLI against the scripted model, in a temporary HOME.
"""

from __future__ import annotations

import argparse
import logging
import random

import anyio
from _offline import offline_home, print_table
from _rss import own_and_descendants_rss_mb  # bench/ is on sys.path as a script

from lettabot.runtime.bot import Bot
from lettabot.runtime.config import Config
from lettabot.testing.letta_home import LettaHome
from lettabot.testing.scripted_model import ScriptedModelServer
from lettabot.testing.soak import FaultyChat, SoakPlan, SoakReport, run_soak


async def soak(args: argparse.Namespace, home: LettaHome,
               model: ScriptedModelServer) -> SoakReport:
    config = Config(_env_file=None, data_dir=home.path / "data",  # type: ignore[call-arg]
                    letta={"model": home.model},
                    access={"open": True, "self_approve": True},
                    turns={"stall_seconds": args.stall},
                    servers={"max_concurrent_turns": args.max_turns})
    plan = SoakPlan(scopes=args.scopes, messages=args.messages, seed=args.seed)
    async with Bot.open(config, grace=10) as bot:
        chat = FaultyChat(random.Random(args.seed + 1), bot=bot)
        bot.add_adapter(chat)
        return await run_soak(bot, chat, model, plan, rss=own_and_descendants_rss_mb)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scopes", type=int, default=100)
    parser.add_argument("--messages", type=int, default=5)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--stall", type=float, default=15.0,
                        help="turns.stall_seconds (how soon a hung model turn is ended)")
    parser.add_argument("--max-turns", type=int, default=8)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)
    with offline_home() as (model, home):
        report = anyio.run(soak, args, home, model)
    rows = report.rows()
    print_table(rows)
    for example in report.lost_examples:
        print("lost:", example)


if __name__ == "__main__":
    main()
