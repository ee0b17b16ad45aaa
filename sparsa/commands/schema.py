"""``sparsa schema``: JSON schema of the accelerator config, for editors and validators."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sparsa.config import AcceleratorConfig
from sparsa.output import check_output_file, write_file

NAME = "schema"
HELP = "print the JSON schema of the accelerator YAML config"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-o", "--output", type=Path, help="write to this file instead of stdout")


def run(args: argparse.Namespace) -> int:
    if args.output:
        check_output_file(args.output, "-o")
    schema = AcceleratorConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "sparsa accelerator config"
    text = json.dumps(schema, indent=2) + "\n"
    if args.output:
        write_file(args.output, text, "-o")
    else:
        print(text, end="")
    return 0
