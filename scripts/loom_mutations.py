#!/usr/bin/env python3
"""Proves each loom model can fail: weaken one ordering at a time, run the models, restore.

Works on a temporary copy of the core (src/, loom_tests/, Cargo.toml with only the root package),
so the tree you are editing is never touched. Usage:

    python3 scripts/loom_mutations.py                 # every mutation (~15-30 min on 2 cores)
    python3 scripts/loom_mutations.py NAME [NAME...]  # some of them
    FILTER=ring_free python3 scripts/loom_mutations.py freelist_push_relaxed   # one model only

Prints, per mutation, the models that failed (a loom deadlock, causality violation or assertion).
A mutation that no model catches is reported as NOT CAUGHT and makes the script exit 1.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

MUTATIONS = [
    ("publish_relaxed", "src/writer.rs",
     "self.shared.write_pos.store(new_pos, Ordering::Release);",
     "self.shared.write_pos.store(new_pos, Ordering::Relaxed);"),
    ("end_store_relaxed", "src/shared.rs",
     "self.end.store(state, Ordering::Release);",
     "self.end.store(state, Ordering::Relaxed);"),
    ("end_loaded_after_pos", "src/shared.rs",
     "        let end = self.end.load(Ordering::Acquire);\n        let written = self.write_pos.load(Ordering::Acquire);",
     "        let written = self.write_pos.load(Ordering::Acquire);\n        let end = self.end.load(Ordering::Acquire);"),
    ("notify_no_fence", "src/wait.rs",
     "        fence(Ordering::SeqCst);\n        // ORDERING: Relaxed: the fence above orders it.",
     "        // ORDERING: Relaxed: the fence above orders it."),
    ("wait_no_fence", "src/wait.rs",
     "            fence(Ordering::SeqCst);\n            match check() {",
     "            match check() {"),
    # A write that exactly meets a parked reader's threshold must wake it.
    ("threshold_missed", "src/wait.rs",
     "if self.want.load(Ordering::Relaxed) <= pos {",
     "if self.want.load(Ordering::Relaxed) < pos {"),
    ("freelist_push_relaxed", "src/segment.rs",
     "compare_exchange_weak(head, raw, Ordering::Release, Ordering::Relaxed)",
     "compare_exchange_weak(head, raw, Ordering::Relaxed, Ordering::Relaxed)"),
    ("freelist_take_relaxed", "src/segment.rs",
     "let mut raw = self.head.swap(std::ptr::null_mut(), Ordering::Acquire);",
     "let mut raw = self.head.swap(std::ptr::null_mut(), Ordering::Relaxed);"),
    ("read_pos_relaxed", "src/reader.rs",
     "shared.read_pos.store(self.pos, Ordering::Release);",
     "shared.read_pos.store(self.pos, Ordering::Relaxed);"),
    ("ready_arm_no_fence", "src/ready.rs",
     "        fence(Ordering::SeqCst);\n        if let Some(why) = due() {",
     "        if let Some(why) = due() {"),
    # A write that exactly meets a subscription's threshold must fire it.
    ("ready_threshold_missed", "src/ready.rs",
     "if self.min.load(Ordering::Relaxed) <= pos {",
     "if self.min.load(Ordering::Relaxed) < pos {"),
    # Arming without publishing the threshold: only the arming side's own re-check could fire it.
    ("ready_min_not_lowered", "src/ready.rs",
     "            self.min.fetch_min(threshold, Ordering::Relaxed);\n",
     ""),
    # A cancel that does not take the entry under the lock: it may fire after all.
    ("ready_cancel_without_removing", "src/ready.rs",
     "        self.take(sub.0).is_some()",
     "        let _ = sub;\n        true"),
    ("read_until_waits_after_scan", "src/reader.rs",
     "self.wait_beyond(seen, deadline)?;",
     "self.wait(avail.saturating_add(1), deadline)?;"),
    ("link_set_relaxed", "src/segment.rs",
     "let old = self.0.swap(raw, Ordering::Release);",
     "let old = self.0.swap(raw, Ordering::Relaxed);"),
    ("link_take_relaxed", "src/segment.rs",
     "let raw = self.0.swap(std::ptr::null_mut(), Ordering::Acquire);",
     "let raw = self.0.swap(std::ptr::null_mut(), Ordering::Relaxed);"),
    # Not an ordering: the uniqueness check that keeps the writer off a segment a view (or a
    # large read copying after releasing the cursor) still shows.
    ("recycle_ignores_pins", "src/writer.rs",
     "if let Some(s) = Arc::get_mut(&mut self.spare[i]) {",
     "if let Some(s) = Some(unsafe { &mut *Arc::as_ptr(&self.spare[i]).cast_mut() }) {"),
]


def main():
    selected = set(sys.argv[1:])
    work = tempfile.mkdtemp(prefix="bodypipe-mut-")
    for d in ("src", "loom_tests"):
        shutil.copytree(os.path.join(ROOT, d), os.path.join(work, d))
    manifest = open(os.path.join(ROOT, "Cargo.toml")).read()
    manifest = re.sub(r"(?m)^members = .*$", 'members = ["."]', manifest)
    manifest = re.sub(r"(?ms)^\[\[bench\]\].*?(?=^\[|\Z)", "", manifest)
    open(os.path.join(work, "Cargo.toml"), "w").write(manifest)
    if os.path.exists(os.path.join(ROOT, "Cargo.lock")):
        shutil.copy(os.path.join(ROOT, "Cargo.lock"), work)
    # loom is a rustc cfg, not a Cargo feature (see src/primitive/mod.rs).
    rustflags = (os.environ.get("RUSTFLAGS", "") + " --cfg bodypipe_loom").strip()
    env = dict(os.environ, LOOM_MAX_PREEMPTIONS=os.environ.get("LOOM_MAX_PREEMPTIONS", "3"), RUSTFLAGS=rustflags,
               CARGO_TARGET_DIR=os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target", "loom-mutations")))
    cmd = ["cargo", "test", "--release", "--test", "loom_models"]
    if os.environ.get("FILTER"):
        cmd.append(os.environ["FILTER"])
    missed = []
    for name, path, before, after in MUTATIONS:
        if selected and name not in selected:
            continue
        f = os.path.join(work, path)
        src = open(f).read()
        if src.count(before) != 1:
            print(f"{name}: pattern not found exactly once in {path}; update this script")
            missed.append(name)
            continue
        open(f, "w").write(src.replace(before, after))
        try:
            p = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        finally:
            open(f, "w").write(src)
        out = p.stdout + p.stderr
        failed = sorted(set(re.findall(r"^test (\w+) \.\.\. FAILED", out, re.M))
                        | set(re.findall(r"^thread '(\w+)' .*panicked", out, re.M)))
        if p.returncode == 0:
            print(f"{name}: NOT CAUGHT")
            missed.append(name)
        else:
            print(f"{name}: caught by {', '.join(failed) or '(the run aborted: ' + out.strip().splitlines()[-1] + ')'}")
        sys.stdout.flush()
    shutil.rmtree(work, ignore_errors=True)
    sys.exit(1 if missed else 0)


if __name__ == "__main__":
    main()
