"""Every run id of every experiment under every profile, as ``profile experiment seed id label``
lines: the committed list (tests/data/run_ids.txt) that refactors must leave unchanged, since a run
id is the key of every stored result.

    python tests/run_ids.py > tests/data/run_ids.txt     # only when ids are meant to change
"""

import dataclasses
import sys

from lrstudy.config import PROFILES
from lrstudy.experiments import EXPERIMENTS


def run_id_lines() -> list[str]:
    lines = []
    for profile in PROFILES:
        for name, experiment in sorted(EXPERIMENTS.items()):
            settings = experiment.settings(profile, device="cpu")
            for label, config in experiment.run_configs(settings):
                lines.append(f"{profile} {name} {config.seed} {config.id} {label}")
                if config.data == "cifar10":  # the committed results trained on the JPEG copy
                    jpeg = dataclasses.replace(config, data="cifar10-jpeg")
                    lines.append(f"{profile} {name} {config.seed} {jpeg.id} {label} [cifar10-jpeg]")
    return lines


if __name__ == "__main__":
    sys.stdout.write("\n".join(run_id_lines()) + "\n")
