"""The CLI package's shape: one module per command, imported only when needed, versions,
one-line errors for missing optional packages, and no test bench in product code."""

from __future__ import annotations

import argparse
import ast
import os
import subprocess
import sys

import pytest

from gridcast.host import cli
from gridcast.protocol import messages, version

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMMANDS_DIR = os.path.join(ROOT, "host", "cli", "commands")

# Makes `import <name>` fail in a child process as if the package were not installed.
BLOCK = """
import sys
class _NotInstalled:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None
sys.meta_path.insert(0, _NotInstalled())
"""


def _python(code: str, *args: str, blocked: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", BLOCK.format(blocked=set(blocked)) + code,
                           *args], capture_output=True, text=True, timeout=120, cwd=ROOT)


def test_one_module_per_command_named_after_it():
    modules = sorted(f[:-3] for f in os.listdir(COMMANDS_DIR)
                     if f.endswith(".py") and f != "__init__.py")
    assert modules == sorted(c.replace("-", "_") for c in cli.COMMANDS)  # light-offset
    for name in cli.COMMANDS:
        module = cli.load(name)
        assert module.HELP and "\n" not in module.HELP
        parser = argparse.ArgumentParser()
        module.add_arguments(parser)
        assert callable(module.run)


def test_help_imports_no_analysis():
    """`gridcast --help` lists every command without loading numpy or the analyzer."""
    done = _python("import sys\nfrom gridcast.host.cli import build_parser\n"
                   "text = build_parser().format_help()\n"
                   "print(text)\n"
                   "print(sorted(m for m in sys.modules if m.split('.')[0] in ('numpy', 'numba')"
                   " or m.startswith('gridcast.host.analysis')))")
    assert done.returncode == 0, done.stderr
    *help_lines, loaded = done.stdout.strip().splitlines()
    assert loaded == "[]"
    text = "\n".join(help_lines)
    for name in cli.COMMANDS:
        assert f"    {name}" in text and cli.load(name).HELP.split()[0] in text


def test_version_names_release_analyzer_firmware_and_protocol(capsys):
    from gridcast.host.analysis.analyzer import ANALYZER_VERSION

    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    line = capsys.readouterr().out
    assert line == (f"gridcast {version.__version__} (analyzer {ANALYZER_VERSION}, firmware "
                    f"{version.version_text(version.FIRMWARE_VERSION)}, protocol "
                    f"{messages.PROTOCOL_VERSION})\n")


def test_compare_without_librosa_is_one_line_naming_the_extra(tmp_path):
    """Checked before the dataset is read or a worker starts: no traceback."""
    done = _python("import sys\nfrom gridcast.host.cli import main\nsys.exit(main(sys.argv[1:]))",
                   "eval", str(tmp_path), "--compare", "librosa", "-j", "2",
                   blocked=("librosa",))
    assert done.returncode == 1
    assert done.stderr == ("gridcast: --compare librosa needs librosa: "
                           "pip install 'gridcast[compare]'\n")


def test_evaluate_checks_the_baseline_before_starting_workers(tmp_path, demo_song):
    audio, beats, _ = demo_song
    (tmp_path / "audio").mkdir()
    (tmp_path / "annotations").mkdir()
    os.symlink(audio, tmp_path / "audio" / "song.wav")
    (tmp_path / "annotations" / "song.beats").write_text(
        "".join(f"{t:.4f}\t1\n" for t in beats))
    done = _python(
        "import sys\n"
        "from gridcast.host import extras\n"
        "from gridcast.host.evaluation import evaluate\n"
        "try:\n"
        "    evaluate.evaluate(sys.argv[1], compare=('librosa',), workers=2)\n"
        "except extras.MissingExtra as exc:\n"
        "    print(exc.extra, exc)\n",
        str(tmp_path), blocked=("librosa",))
    assert done.returncode == 0, done.stderr
    assert done.stdout == ("compare the librosa baseline needs librosa: "
                           "pip install 'gridcast[compare]'\n")


@pytest.mark.parametrize(("script", "module", "what"), [
    ("gridcast.host.training.train", "torch", "training the beat network"),
    ("gridcast.host.training.train_position_net", "torch", "training the position network"),
    ("gridcast.host.training.corpus", "mido", "rendering the training corpus"),
])
def test_training_without_its_packages_is_one_line(tmp_path, script, module, what):
    argv = [str(tmp_path)] if script.endswith("corpus") else [str(tmp_path), str(tmp_path)]
    done = _python(f"import runpy, sys\nsys.argv = ['x', *sys.argv[1:]]\n"
                   f"runpy.run_module({script!r}, run_name='__main__')", *argv,
                   blocked=(module,))
    assert done.returncode == 1
    assert done.stderr == f"gridcast: {what} needs {module}: pip install 'gridcast[train]'\n"


def test_importing_the_cli_and_the_daemon_loads_nothing_from_hil():
    done = _python("import sys\nfrom gridcast.host import cli\n"
                   "for name in cli.COMMANDS:\n    cli.load(name)\n"
                   "import gridcast.agent.daemon\n"
                   "print(sorted(m for m in sys.modules if m.startswith('gridcast.hil')))")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def _imports(path: str) -> list[tuple[int, str]]:
    with open(path, encoding="utf-8") as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module == "gridcast":
            found += [(node.lineno, f"gridcast.{a.name}") for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module))
    return found


def test_product_code_never_imports_the_bench():
    """Not even inside a function (what `gridcast sim` and the demo run must be product code)."""
    offenders = []
    for part in ("host", "agent", "protocol", "firmware", "native"):
        for folder, _, files in os.walk(os.path.join(ROOT, part)):
            for name in files:
                if name.endswith(".py"):
                    path = os.path.join(folder, name)
                    offenders += [f"{os.path.relpath(path, ROOT)}:{line} {module}"
                                  for line, module in _imports(path)
                                  if module.startswith("gridcast.hil")]
    assert not offenders, "product code imports the bench:\n" + "\n".join(sorted(set(offenders)))
