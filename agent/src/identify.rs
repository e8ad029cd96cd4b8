//! Names the workload behind a GPU process from what the node shows about it under `/proc`: its Unix
//! user (from `/proc/<pid>/status`) and an allow-list of environment variables (from
//! `/proc/<pid>/environ`; nothing else is read from there, environments hold secrets).
//!
//! Identities are cached per (pid, process start time), so a reused pid is identified afresh.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use crate::reading::{WorkloadIdentity, WorkloadKind};

/// The environment variables read by default.
pub const DEFAULT_ENV_KEYS: &[&str] = &["MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID"];

pub struct ProcIdentifier {
    proc_root: PathBuf,
    users: HashMap<u32, String>,
    env_keys: Vec<String>,
    cache: HashMap<(u32, u64), (WorkloadIdentity, String)>,
}

/// Field 22 of `/proc/<pid>/stat` (start time in clock ticks), after the `comm` field, which may itself
/// hold spaces and parentheses.
fn start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The real uid from a `/proc/<pid>/status` text.
fn real_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// `name:x:uid:...` lines of a passwd file.
fn parse_passwd(text: &str) -> HashMap<u32, String> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split(':');
            let name = f.next()?;
            let uid = f.nth(1)?.parse().ok()?;
            Some((uid, name.to_string()))
        })
        .collect()
}

/// The allow-listed variables of a NUL-separated `environ` blob.
fn pick_env(environ: &[u8], keys: &[String]) -> BTreeMap<String, String> {
    environ
        .split(|&b| b == 0)
        .filter_map(|kv| {
            let kv = std::str::from_utf8(kv).ok()?;
            let (k, v) = kv.split_once('=')?;
            keys.iter().any(|want| want == k).then(|| (k.to_string(), v.to_string()))
        })
        .collect()
}

impl ProcIdentifier {
    /// `passwd` maps uids to names (the host's `/etc/passwd`, mounted into the agent's pod).
    pub fn new(proc_root: &Path, passwd: Option<&Path>, env_keys: Vec<String>) -> Self {
        let users = passwd.and_then(|p| std::fs::read_to_string(p).ok()).map(|t| parse_passwd(&t)).unwrap_or_default();
        Self { proc_root: proc_root.to_path_buf(), users, env_keys, cache: HashMap::new() }
    }

    /// The identity and command name of `pid`. A process that has already exited gets an empty
    /// identity (it is still billed, to `unidentified`).
    pub fn identify(&mut self, pid: u32) -> (WorkloadIdentity, String) {
        let dir = self.proc_root.join(pid.to_string());
        let Some(start) = std::fs::read_to_string(dir.join("stat")).ok().as_deref().and_then(start_time) else {
            return (WorkloadIdentity::default(), String::new());
        };
        if let Some(hit) = self.cache.get(&(pid, start)) {
            return hit.clone();
        }
        let uid = std::fs::read_to_string(dir.join("status")).ok().as_deref().and_then(real_uid);
        let env = std::fs::read(dir.join("environ")).map(|e| pick_env(&e, &self.env_keys)).unwrap_or_default();
        let comm = std::fs::read_to_string(dir.join("comm")).map(|c| c.trim().to_string()).unwrap_or_default();
        let identity = WorkloadIdentity {
            kind: WorkloadKind::HostProcess,
            user: uid.map(|u| self.users.get(&u).cloned().unwrap_or_else(|| format!("uid-{u}"))).unwrap_or_default(),
            uid,
            env,
            ..Default::default()
        };
        self.cache.insert((pid, start), (identity.clone(), comm.clone()));
        (identity, comm)
    }

    /// Forgets processes no longer running, so the cache stays as small as the node's process list.
    pub fn retain(&mut self, live_pids: &std::collections::HashSet<u32>) {
        self.cache.retain(|(pid, _), _| live_pids.contains(pid));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fake_proc(root: &Path, pid: u32, uid: u32, environ: &[u8], start: u64) {
        let d = root.join(pid.to_string());
        std::fs::create_dir_all(&d).unwrap();
        std::fs::write(
            d.join("stat"),
            format!("{pid} (python (x)) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 100 200"),
        )
        .unwrap();
        std::fs::write(d.join("status"), format!("Name:\tpython\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t0\n"))
            .unwrap();
        std::fs::write(d.join("environ"), environ).unwrap();
        std::fs::write(d.join("comm"), "python\n").unwrap();
    }

    #[test]
    fn reads_the_user_and_only_allow_listed_environment() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(
            dir.path(),
            77,
            1001,
            b"HOME=/root\0MLFLOW_RUN_ID=abc123\0AWS_SECRET_ACCESS_KEY=nope\0MLFLOW_EXPERIMENT_ID=4\0",
            5000,
        );
        std::fs::write(
            dir.path().join("passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/bash\n",
        )
        .unwrap();
        let keys = DEFAULT_ENV_KEYS.iter().map(|s| s.to_string()).collect();
        let mut id = ProcIdentifier::new(dir.path(), Some(&dir.path().join("passwd")), keys);
        let (w, comm) = id.identify(77);
        assert_eq!(w.user, "alice");
        assert_eq!(w.uid, Some(1001));
        assert_eq!(comm, "python");
        assert_eq!(w.env.get("MLFLOW_RUN_ID").map(String::as_str), Some("abc123"));
        assert_eq!(w.env.len(), 2, "{:?}", w.env);
    }

    #[test]
    fn a_reused_pid_is_identified_afresh_and_a_gone_one_is_unidentified() {
        let dir = tempfile::tempdir().unwrap();
        fake_proc(dir.path(), 77, 1001, b"MLFLOW_RUN_ID=first\0", 5000);
        let mut id = ProcIdentifier::new(dir.path(), None, vec!["MLFLOW_RUN_ID".into()]);
        assert_eq!(id.identify(77).0.env["MLFLOW_RUN_ID"], "first");
        fake_proc(dir.path(), 77, 1002, b"MLFLOW_RUN_ID=second\0", 9000);
        let (w, _) = id.identify(77);
        assert_eq!(w.env["MLFLOW_RUN_ID"], "second");
        assert_eq!(w.user, "uid-1002");
        assert_eq!(id.identify(4242).0, WorkloadIdentity::default());
    }
}
