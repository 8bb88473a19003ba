"""`idp serve` must set up prometheus-client's multiprocess mode before anything imports it,
so importing the CLI must not import the metrics module (it did once, through a command)."""

import subprocess
import sys


def test_importing_the_cli_leaves_metrics_unimported():
    code = "import sys, idp.cli; print('idp.ops.metrics' in sys.modules, 'prometheus_client' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
