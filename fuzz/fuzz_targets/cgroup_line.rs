//! Arbitrary text (lossy UTF-8) as a `/proc/<pid>/cgroup` file: `cgroup::parse` must never panic, must
//! only name what its rules allow (hex container ids, 36-character pod UIDs, numeric Slurm jobs, …),
//! and must read a path the same wherever a cgroup namespace roots it (`/../..` prefixes). The same
//! text also goes through the other `/proc` text parsers (`stat` start time, passwd).

#![no_main]

use gpucost_agent::identify::cgroup::{CgroupInfo, parse};
use gpucost_agent::identify::proc::{parse_passwd, start_time};
use libfuzzer_sys::fuzz_target;

fn is_hex_id(s: &str) -> bool {
    s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

fn check(text: &str, info: &CgroupInfo) {
    if let Some(id) = &info.container_id {
        assert!(is_hex_id(id), "container id {id:?}");
        assert!(text.contains(id.as_str()));
    }
    if let Some(rt) = info.runtime {
        assert!(info.container_id.is_some(), "a runtime without a container");
        assert!(["containerd", "cri-o", "docker", "podman"].contains(&rt));
    }
    if let Some(uid) = &info.pod_uid {
        assert_eq!(uid.len(), 36, "pod uid {uid:?}");
        assert!(uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-'), "pod uid {uid:?}");
    }
    if let Some(job) = &info.slurm_job_id {
        assert!(!job.is_empty() && job.bytes().all(|b| b.is_ascii_digit()), "slurm job {job:?}");
    }
    if let Some(unit) = &info.systemd_unit {
        assert!(unit.ends_with(".service") && !unit.contains('/'), "unit {unit:?}");
    }
    if let Some(task) = &info.ecs_task_id {
        assert!(!task.contains('/') && text.contains(task.as_str()), "ecs task {task:?}");
    }
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let info = parse(&text);
    check(&text, &info);

    // A cgroup namespace shows paths relative to its root (`0::/../../kubepods…`): the same path under
    // `/../` must say the same. Lone `\r`s are left out: `lines()` would split the rebuilt text
    // differently.
    if !text.contains('\r') {
        let nested: Vec<String> = text
            .lines()
            .map(|l| match l.splitn(3, ':').collect::<Vec<_>>()[..] {
                [h, c, path] => format!("{h}:{c}:/../{path}"),
                _ => l.to_string(),
            })
            .collect();
        assert_eq!(parse(&nested.join("\n")), info, "under a cgroup namespace:\n{}", nested.join("\n"));
    }

    if let Some(t) = start_time(&text) {
        // Leading zeros and a `+` aside, the number is in the text as written.
        assert!(text.contains(&t.to_string()), "start time {t}");
    }
    for name in parse_passwd(&text).values() {
        assert!(!name.contains(':') && !name.contains('\n'));
    }
});
