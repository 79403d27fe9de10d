"""A real one-node Slurm cluster for the launcher tests: munged, slurmctld and slurmd started from a temp dir.

Needs Debian's ``slurm-wlm`` and ``munge`` packages and root (slurmd launches jobs as their user). Every
state, spool, log, pid and socket path lives in the temp dir; ``SLURM_CONF`` points the client commands
(sbatch, squeue, scontrol, scancel) and submitit at it. Accounting is off, so ``sacct`` does not answer:
the tests follow jobs with ``squeue`` and the run directories.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)

BINARIES = ("munged", "slurmctld", "slurmd", "sbatch", "squeue", "scontrol", "scancel")


def missing_reason() -> Optional[str]:
    """Why a cluster cannot start on this machine, or None."""
    absent = [b for b in BINARIES if shutil.which(b) is None]
    if absent:
        return f"Slurm not installed ({', '.join(absent)} not found; apt-get install slurm-wlm munge)"
    if os.geteuid() != 0:
        return "a one-node Slurm cluster needs root (slurmd starts jobs as their user)"
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


SLURM_CONF = """\
ClusterName=samfit
SlurmctldHost={host}
SlurmUser=root
SlurmdUser=root
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={root}/munge.sock
StateSaveLocation={root}/state
SlurmdSpoolDir={root}/spool
SlurmctldPidFile={root}/slurmctld.pid
SlurmdPidFile={root}/slurmd.pid
SlurmctldLogFile={root}/slurmctld.log
SlurmdLogFile={root}/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
ReturnToService=2
KillWait=5
MinJobAge=600
SlurmctldTimeout=30
SlurmdTimeout=30
NodeName={host} CPUs=2 RealMemory=4000 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    root: Path
    host: str = field(default_factory=lambda: socket.gethostname().split(".")[0])
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def conf(self) -> Path:
        return self.root / "slurm.conf"

    def env(self) -> dict[str, str]:
        return {"SLURM_CONF": str(self.conf)}

    def run(self, *cmd: str, check: bool = True) -> str:
        out = subprocess.run(cmd, env={**os.environ, **self.env()}, capture_output=True, text=True, timeout=60)
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip() or out.stdout.strip()}")
        return out.stdout

    def start(self, timeout: float = 60.0) -> None:
        for sub in ("state", "spool", "munge"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        os.chmod(self.root, 0o755)
        key = self.root / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        os.chmod(key, 0o400)
        os.chmod(self.root / "munge", 0o700)
        self.conf.write_text(
            SLURM_CONF.format(host=self.host, root=self.root, ctld_port=_free_port(), d_port=_free_port())
        )
        munge = self.root / "munge"
        self._spawn(
            "munged",
            "--foreground",
            "--force",
            f"--key-file={key}",
            f"--socket={self.root}/munge.sock",
            f"--pid-file={munge}/munged.pid",
            f"--log-file={munge}/munged.log",
            f"--seed-file={munge}/munged.seed",
        )
        self._wait(lambda: (self.root / "munge.sock").exists(), timeout, "munged socket")
        self._spawn("slurmctld", "-D", "-i", "-f", str(self.conf))
        self._wait(lambda: self.run("scontrol", "ping", check=False).find("UP") >= 0, timeout, "slurmctld")
        self._spawn("slurmd", "-D", "-f", str(self.conf), "-N", self.host)
        self._wait(lambda: self.node_state().startswith("idle"), timeout, "slurmd (node idle)")

    def _spawn(self, *cmd: str) -> None:
        logfile = open(self.root / f"{cmd[0]}.out", "wb")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env={**os.environ, **self.env()})
        self.procs.append(proc)

    def _wait(self, ready, timeout: float, what: str) -> None:
        end = time.time() + timeout
        while time.time() < end:
            if any(p.poll() is not None for p in self.procs):
                dead = next(p for p in self.procs if p.poll() is not None)
                raise RuntimeError(f"{dead.args[0]} exited with {dead.returncode}: {self.logs()}")
            if ready():
                return
            time.sleep(0.3)
        raise RuntimeError(f"timed out waiting for {what}: {self.logs()}")

    def logs(self) -> str:
        texts = [
            p.read_text(errors="replace")[-1500:]
            for p in sorted(self.root.glob("*.out")) + sorted(self.root.glob("*.log"))
        ]
        return "\n".join(texts)

    def node_state(self) -> str:
        return self.run("sinfo", "-h", "-N", "-o", "%T", check=False).strip()

    def jobs(self) -> dict[str, str]:
        """Job id (array jobs as ``<id>_<task>``) -> state, for the jobs Slurm still lists."""
        out = self.run("squeue", "-h", "-r", "-o", "%i %T")
        return dict(line.split() for line in out.splitlines() if line.strip())

    def release_requeued(self) -> list[str]:
        """Start requeued jobs now: Slurm holds a requeued job back (BeginTime) for about two minutes."""
        out = self.run("squeue", "-h", "-r", "-t", "PENDING", "-o", "%i %r")
        released = []
        for line in out.splitlines():
            job, _, reason = line.partition(" ")
            if reason.strip() == "BeginTime":
                self.run("scontrol", "update", f"JobId={job}", "StartTime=now", check=False)
                released.append(job)
        return released

    def cancel_all(self) -> None:
        self.run("scancel", "--user=root", check=False)

    def stop(self) -> None:
        self.cancel_all()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.terminate()
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
