//! Reads what the node's `/proc` says about one process: its start time (to tell a reused pid from
//! the process before it), real uid, command name, cgroup, and the allow-listed environment variables
//! (`/proc/<pid>/environ` is read for those keys only: environments hold secrets).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use super::cgroup::{self, CgroupInfo};

/// What `/proc/<pid>` told us.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcFacts {
    /// Field 22 of `/proc/<pid>/stat`: start time in clock ticks since boot.
    pub start_time: u64,
    pub uid: Option<u32>,
    pub comm: String,
    pub env: BTreeMap<String, String>,
    pub cgroup: CgroupInfo,
}

/// Field 22 of `/proc/<pid>/stat`, read after the `comm` field (which may hold spaces and parentheses).
pub fn start_time(stat: &str) -> Option<u64> {
    let after_comm = &stat[stat.rfind(')')? + 1..];
    after_comm.split_whitespace().nth(19)?.parse().ok()
}

/// The real uid from a `/proc/<pid>/status` text.
fn real_uid(status: &str) -> Option<u32> {
    status.lines().find_map(|l| l.strip_prefix("Uid:"))?.split_whitespace().next()?.parse().ok()
}

/// `name:x:uid:...` lines of a passwd file.
pub fn parse_passwd(text: &str) -> HashMap<u32, String> {
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

/// The start time of `pid`, or `None` if it is gone. One small read: the cache key.
pub fn read_start_time(proc_root: &Path, pid: u32) -> Option<u64> {
    std::fs::read_to_string(proc_root.join(pid.to_string()).join("stat")).ok().as_deref().and_then(start_time)
}

/// Everything we read about `pid`, or `None` if it has exited.
pub fn read(proc_root: &Path, pid: u32, start_time: u64, env_keys: &[String]) -> ProcFacts {
    let dir = proc_root.join(pid.to_string());
    ProcFacts {
        start_time,
        uid: std::fs::read_to_string(dir.join("status")).ok().as_deref().and_then(real_uid),
        comm: std::fs::read_to_string(dir.join("comm")).map(|c| c.trim().to_string()).unwrap_or_default(),
        env: std::fs::read(dir.join("environ")).map(|e| pick_env(&e, env_keys)).unwrap_or_default(),
        cgroup: std::fs::read_to_string(dir.join("cgroup")).map(|c| cgroup::parse(&c)).unwrap_or_default(),
    }
}

/// Writes a process into a fake `/proc` tree, in the kernel's formats: for tests, the simulator's node
/// stand-in and the benchmark.
pub fn write_fake(
    root: &Path,
    pid: u32,
    uid: u32,
    start: u64,
    comm: &str,
    environ: &[(&str, &str)],
    cgroup: &str,
) -> std::io::Result<()> {
    let d = root.join(pid.to_string());
    std::fs::create_dir_all(&d)?;
    std::fs::write(
        d.join("stat"),
        format!("{pid} ({comm}) S 1 {pid} {pid} 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 {start} 100 200"),
    )?;
    std::fs::write(
        d.join("status"),
        format!(
            "Name:\t{comm}\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nGid:\t{uid}\t{uid}\t{uid}\t{uid}\n"
        ),
    )?;
    let env: Vec<u8> = environ.iter().flat_map(|(k, v)| format!("{k}={v}\0").into_bytes()).collect();
    std::fs::write(d.join("environ"), env)?;
    std::fs::write(d.join("comm"), format!("{comm}\n"))?;
    std::fs::write(d.join("cgroup"), format!("{cgroup}\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_user_command_cgroup_and_only_allow_listed_environment() {
        let dir = tempfile::tempdir().unwrap();
        let env = [
            ("HOME", "/root"),
            ("MLFLOW_RUN_ID", "abc123"),
            ("AWS_SECRET_ACCESS_KEY", "nope"),
            ("MLFLOW_EXPERIMENT_ID", "4"),
        ];
        write_fake(dir.path(), 77, 1001, 5000, "python (x)", &env, "0::/system.slice/train.service").unwrap();
        let keys = vec!["MLFLOW_RUN_ID".to_string(), "MLFLOW_EXPERIMENT_ID".to_string()];
        let start = read_start_time(dir.path(), 77).unwrap();
        assert_eq!(start, 5000);
        let f = read(dir.path(), 77, start, &keys);
        assert_eq!(f.uid, Some(1001));
        assert_eq!(f.comm, "python (x)");
        assert_eq!(f.cgroup.systemd_unit.as_deref(), Some("train.service"));
        assert_eq!(f.env.get("MLFLOW_RUN_ID").map(String::as_str), Some("abc123"));
        assert_eq!(f.env.len(), 2, "{:?}", f.env);
        assert_eq!(read_start_time(dir.path(), 78), None);
    }

    #[test]
    fn passwd_lines_map_uids_to_names() {
        let users = parse_passwd("root:x:0:0::/root:/bin/sh\nalice:x:1001:1001::/home/alice:/bin/bash\nbroken line\n");
        assert_eq!(users.get(&1001).map(String::as_str), Some("alice"));
        assert_eq!(users.len(), 2);
    }
}
