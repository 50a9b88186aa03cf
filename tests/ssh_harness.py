"""Two (or more) "remote machines" for NNI's remote training service: OpenSSH servers on loopback ports of this
machine, each started by the test with a host key and a client key generated in a temporary folder.

A machine is one ``sshd -D`` with its own ``sshd_config``: key login only, an ``AuthorizedKeysFile`` in the
temporary folder, the SFTP subsystem (NNI uploads the trial code through it), and ``SetEnv`` for what a real
machine would have of its own -- a HOME (NNI's remote service keeps ``~/nni-experiments`` there, so the trials of
each machine land in its own folder, not in this user's home), the user's module on PYTHONPATH, and pip told to
stay offline (NNI runs ``pip install nni --upgrade`` on every machine when it starts). The servers log to
``sshd.log`` (``Accepted publickey ...`` shows NNI logged in), and are stopped at the end; processes NNI left
running on a "machine" (trial keepers) are recognised by that machine's HOME on their command line and ended.
"""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

from cli_harness import free_port

SSHD = Path('/usr/sbin/sshd')


def missing_tools() -> str | None:
    """Why SSH servers cannot be started here (None: they can)."""
    if not SSHD.is_file():
        return 'needs the OpenSSH server (apt-get install openssh-server; scripts/setup.sh installs it)'
    if shutil.which('ssh-keygen') is None:
        return 'needs ssh-keygen (apt-get install openssh-client)'
    return None


def keygen(path: Path) -> Path:
    subprocess.run(['ssh-keygen', '-q', '-t', 'ed25519', '-N', '', '-C', 'nni-asng-test', '-f', str(path)],
                   check=True, capture_output=True, timeout=60)
    return path


class SshMachine:
    """One SSH server on ``127.0.0.1:port`` standing for a machine, with its own HOME."""

    def __init__(self, root: Path, name: str, host_key: Path, authorized_key: Path, env: dict[str, str]):
        self.root = root / name
        self.home = self.root / 'home'
        self.home.mkdir(parents=True)
        self.log = self.root / 'sshd.log'
        self.port = free_port()
        authorized = self.root / 'authorized_keys'
        authorized.write_text(authorized_key.read_text())
        environment = {'HOME': str(self.home), **env}
        lines = [f'Port {self.port}', 'ListenAddress 127.0.0.1', f'HostKey {host_key}',
                 f'AuthorizedKeysFile {authorized}', 'PubkeyAuthentication yes', 'PasswordAuthentication no',
                 'KbdInteractiveAuthentication no', 'UsePAM no', 'PermitRootLogin prohibit-password',
                 'StrictModes no', f'PidFile {self.root / "sshd.pid"}', 'Subsystem sftp internal-sftp',
                 'PrintMotd no', 'LogLevel VERBOSE',
                 'SetEnv ' + ' '.join(f'{key}={value}' for key, value in environment.items())]
        config = self.root / 'sshd_config'
        config.write_text('\n'.join(lines) + '\n')
        if os.geteuid() == 0:
            Path('/run/sshd').mkdir(mode=0o755, exist_ok=True)     # sshd's privilege separation folder
        self.process = subprocess.Popen([str(SSHD), '-D', '-f', str(config), '-E', str(self.log)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self._wait_until_up()

    def _wait_until_up(self, timeout: float = 20.0) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f'sshd on port {self.port} exited: {self.process.stderr.read().decode()} '
                                   f'{self.log.read_text() if self.log.is_file() else ""}')
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=2) as sock:
                    if sock.recv(64).startswith(b'SSH-'):
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f'sshd on port {self.port} did not answer within {timeout} s')

    def logins(self) -> int:
        """Successful key logins so far (sshd's log)."""
        return self.log.read_text().count('Accepted publickey') if self.log.is_file() else 0

    def entry(self, key: Path, python_path: str | Path) -> dict:
        """This machine in NNI's ``machineList``."""
        return {'host': '127.0.0.1', 'port': self.port, 'user': getpass.getuser(), 'sshKeyFile': str(key),
                'pythonPath': str(python_path)}

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        end_processes_mentioning(str(self.home))


def end_processes_mentioning(text: str) -> list[int]:
    """End the processes whose command line mentions ``text`` (a machine's private HOME: the trial keepers and
    trials NNI started there); returns their ids."""
    import psutil
    ended = []
    for process in psutil.process_iter(['pid', 'cmdline']):
        if process.info['pid'] == os.getpid() or not any(text in part for part in process.info['cmdline'] or []):
            continue
        try:
            process.terminate()
            process.wait(10)
        except psutil.TimeoutExpired:
            process.kill()
        except psutil.NoSuchProcess:
            pass
        ended.append(process.info['pid'])
    return ended


class Machines:
    """``count`` SSH servers sharing one host key and one authorized client key, all in ``root``."""

    def __init__(self, root: Path, count: int, env: dict[str, str]):
        root.mkdir(parents=True, exist_ok=True)
        self.host_key = keygen(root / 'host_ed25519')
        self.client_key = keygen(root / 'client_ed25519')
        self.machines: list[SshMachine] = []
        try:
            for i in range(count):
                self.machines.append(SshMachine(root, f'machine{i + 1}', self.host_key,
                                                Path(f'{self.client_key}.pub'), env))
        except BaseException:
            self.stop()
            raise

    def __getitem__(self, index: int) -> SshMachine:
        return self.machines[index]

    def __iter__(self):
        return iter(self.machines)

    def stop(self) -> None:
        for machine in self.machines:
            machine.stop()


def venv_python_path() -> Path:
    """The folder of the Python running the tests (a virtual environment's ``bin``; not resolved, or it would be
    the base interpreter, which has neither NNI nor nni-asng)."""
    return Path(sys.executable).parent


def python_without_nni_asng(folder: Path) -> Path:
    """A virtual environment whose Python sees NNI, torch and the rest of the test environment's packages, but not
    nni-asng: a ``.pth`` line adds the test environment's site-packages to its path, where the ``.pth`` files that
    install nni-asng (editable) are not run. Returns its ``bin`` folder (for ``pythonPath``)."""
    import sysconfig
    base = Path(getattr(sys, '_base_executable', sys.executable))
    subprocess.run([str(base), '-m', 'venv', '--without-pip', str(folder)], check=True, capture_output=True,
                   timeout=120)
    version = f'python{sys.version_info.major}.{sys.version_info.minor}'
    site = folder / 'lib' / version / 'site-packages'
    (site / 'test_environment.pth').write_text(sysconfig.get_paths()['purelib'] + '\n')
    return folder / 'bin'
