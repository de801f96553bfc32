# @title Set-up on Colab (fetches and installs the series; elsewhere it does nothing)
# On Colab: fetch the series (helpers + data) and install it. Elsewhere this cell does nothing.
import sys

REPO = "@REPOSITORY@"
TARGET = "/content/inside-the-cls-token"

if "google.colab" in sys.modules:
    import importlib
    import importlib.metadata
    import os
    import subprocess

    def _run(*cmd):
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} failed:\n{done.stderr}{done.stdout}")

    if not os.path.isdir(TARGET):
        _run("git", "clone", "-q", "--depth", "1", REPO, TARGET)
    try:
        importlib.metadata.version("inside-the-cls-token")
    except importlib.metadata.PackageNotFoundError:
        # A plain install keeps Colab's torch and ipywidgets and, unlike an editable one,
        # can be imported at once, without restarting the runtime.
        _run(sys.executable, "-m", "pip", "install", "-q", TARGET)
    importlib.invalidate_caches()
    os.chdir(os.path.join(TARGET, "notebooks"))
    print(f"The series is installed; working in {os.getcwd()}")
