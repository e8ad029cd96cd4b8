//! Reads `/proc/<pid>/cgroup` for what a process runs in: a container (and its runtime), a Kubernetes
//! pod, an ECS task, a Slurm job, or a systemd service. Works on cgroup v1 and v2, with the cgroupfs and
//! systemd drivers, and on paths relative to a cgroup namespace (`/../../kubepods/...`): each path is
//! read segment by segment, so where it starts does not matter.

/// What a cgroup path says about a process. Fields are `None` when the path does not say.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupInfo {
    pub container_id: Option<String>,
    /// `containerd`, `cri-o`, `docker` or `podman`, when the path names it.
    pub runtime: Option<&'static str>,
    /// With dashes, as the API server writes it (systemd slices write it with underscores).
    pub pod_uid: Option<String>,
    pub ecs_task_id: Option<String>,
    pub slurm_job_id: Option<String>,
    pub slurm_uid: Option<u32>,
    /// The deepest `*.service` unit.
    pub systemd_unit: Option<String>,
}

fn is_hex_id(s: &str) -> bool {
    s.len() >= 32 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// A pod UID as cgroups write it: 36 characters of hex and dashes (or underscores, systemd driver).
fn pod_uid(s: &str) -> Option<String> {
    let uid = s.replace('_', "-");
    (uid.len() == 36 && uid.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')).then_some(uid)
}

fn scoped<'a>(seg: &'a str, prefix: &str) -> Option<&'a str> {
    seg.strip_prefix(prefix)?.strip_suffix(".scope").filter(|id| is_hex_id(id))
}

fn read_path(path: &str, info: &mut CgroupInfo) {
    let segs: Vec<&str> = path.split('/').filter(|s| !s.is_empty() && *s != "..").collect();
    for (i, seg) in segs.iter().enumerate() {
        let prev = if i > 0 { segs[i - 1] } else { "" };
        let mut container = |id: &str, runtime: Option<&'static str>| {
            info.container_id.get_or_insert_with(|| id.to_string());
            if info.runtime.is_none() {
                info.runtime = runtime;
            }
        };
        if let Some(id) = scoped(seg, "cri-containerd-") {
            container(id, Some("containerd"));
        } else if let Some(id) = scoped(seg, "crio-") {
            container(id, Some("cri-o"));
        } else if let Some(id) = scoped(seg, "docker-") {
            container(id, Some("docker"));
        } else if let Some(id) = scoped(seg, "libpod-") {
            container(id, Some("podman"));
        } else if is_hex_id(seg) && prev == "docker" {
            container(seg, Some("docker"));
        } else if prev == "ecs" {
            // cgroup v1 ECS: /ecs/<task id>/<container id>
            info.ecs_task_id.get_or_insert_with(|| seg.to_string());
        } else if is_hex_id(seg) && (segs[..i].iter().any(|s| s.starts_with("pod")) || segs[..i].contains(&"ecs")) {
            // cgroupfs driver: /kubepods/<qos>/pod<uid>/<container id>, /ecs/<task>/<container id>
            container(seg, if segs[..i].contains(&"ecs") { Some("docker") } else { None });
        }
        if let Some(rest) = seg.strip_suffix(".slice") {
            if let Some(uid) = rest.rsplit_once("-pod").and_then(|(_, u)| pod_uid(u)) {
                info.pod_uid.get_or_insert(uid);
            } else if let Some(task) = rest.strip_prefix("ecstasks-").filter(|t| !t.is_empty()) {
                info.ecs_task_id.get_or_insert_with(|| task.to_string());
            }
        } else if let Some(uid) = seg.strip_prefix("pod").and_then(pod_uid) {
            info.pod_uid.get_or_insert(uid);
        }
        if let Some(job) = seg.strip_prefix("job_").filter(|j| !j.is_empty() && j.bytes().all(|b| b.is_ascii_digit())) {
            info.slurm_job_id.get_or_insert_with(|| job.to_string());
        }
        if let Some(uid) = seg.strip_prefix("uid_").and_then(|u| u.parse().ok()) {
            info.slurm_uid.get_or_insert(uid);
        }
        if seg.ends_with(".service") {
            info.systemd_unit = Some(seg.to_string());
        }
    }
}

/// Parses a `/proc/<pid>/cgroup` file. The cgroup v2 line (`0::<path>`) is read first; v1 lines fill
/// in what it leaves open (on a v1 host the controllers may disagree, e.g. `name=systemd` vs `cpu`).
pub fn parse(text: &str) -> CgroupInfo {
    let mut info = CgroupInfo::default();
    let lines: Vec<(&str, &str)> = text
        .lines()
        .filter_map(|l| l.splitn(3, ':').nth(2).map(|path| (l.split(':').next().unwrap_or(""), path)))
        .collect();
    for (_, path) in lines.iter().filter(|(h, _)| *h == "0") {
        read_path(path, &mut info);
    }
    for (_, path) in lines.iter().filter(|(h, _)| *h != "0") {
        read_path(path, &mut info);
    }
    info
}

#[cfg(test)]
mod tests {
    use super::*;

    const CID: &str = "4f2c8e3a9b1d7f6e5c4b3a29180716253443526170819a0b1c2d3e4f5a6b7c8d";
    const UID: &str = "0c2f1e4a-5b6d-4c3e-9f8a-7b6c5d4e3f2a";

    struct Case {
        /// Where this format comes from.
        source: &'static str,
        line: String,
        want: CgroupInfo,
    }

    fn pod(runtime: Option<&'static str>) -> CgroupInfo {
        CgroupInfo { container_id: Some(CID.into()), runtime, pod_uid: Some(UID.into()), ..Default::default() }
    }

    fn cases() -> Vec<Case> {
        let uid_ = UID.replace('-', "_");
        vec![
            Case {
                source: "kubelet, cgroup v2, systemd driver, containerd (EKS AL2023 default)",
                line: format!(
                    "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{uid_}.slice/cri-containerd-{CID}.scope"
                ),
                want: pod(Some("containerd")),
            },
            Case {
                source: "kubelet, cgroup v2, systemd driver, Guaranteed QoS (no QoS slice)",
                line: format!("0::/kubepods.slice/kubepods-pod{uid_}.slice/cri-containerd-{CID}.scope"),
                want: pod(Some("containerd")),
            },
            Case {
                source: "kubelet, cgroup v2, systemd driver, CRI-O (OpenShift)",
                line: format!(
                    "0::/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{uid_}.slice/crio-{CID}.scope"
                ),
                want: pod(Some("cri-o")),
            },
            Case {
                source: "kubelet, cgroup v1, cgroupfs driver (EKS AL2 with containerd): one line per controller",
                line: format!(
                    "12:memory:/kubepods/burstable/pod{UID}/{CID}\n11:cpu,cpuacct:/kubepods/burstable/pod{UID}/{CID}\n1:name=systemd:/kubepods/burstable/pod{UID}/{CID}"
                ),
                want: pod(None),
            },
            Case {
                source: "kubelet, cgroup v1, cgroupfs driver, Guaranteed QoS",
                line: format!("4:devices:/kubepods/pod{UID}/{CID}"),
                want: pod(None),
            },
            Case {
                source: "container in its own cgroup namespace (cgroupns=private): path relative to the namespace root",
                line: format!("0::/../../kubepods-burstable-pod{uid_}.slice/cri-containerd-{CID}.scope"),
                want: pod(Some("containerd")),
            },
            Case {
                source: "Docker, cgroup v2, systemd driver",
                line: format!("0::/system.slice/docker-{CID}.scope"),
                want: CgroupInfo { container_id: Some(CID.into()), runtime: Some("docker"), ..Default::default() },
            },
            Case {
                source: "Docker, cgroup v1, cgroupfs driver",
                line: format!("9:pids:/docker/{CID}\n1:name=systemd:/docker/{CID}"),
                want: CgroupInfo { container_id: Some(CID.into()), runtime: Some("docker"), ..Default::default() },
            },
            Case {
                source: "Podman, cgroup v2",
                line: format!("0::/machine.slice/libpod-{CID}.scope/container"),
                want: CgroupInfo { container_id: Some(CID.into()), runtime: Some("podman"), ..Default::default() },
            },
            Case {
                source: "Amazon ECS on cgroup v1 (ECS-optimized AL2): /ecs/<task id>/<container id>",
                line: format!("9:memory:/ecs/5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e/{CID}"),
                want: CgroupInfo {
                    container_id: Some(CID.into()),
                    runtime: Some("docker"),
                    ecs_task_id: Some("5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e".into()),
                    ..Default::default()
                },
            },
            Case {
                source: "Amazon ECS on cgroup v2 (ECS-optimized AL2023): ecstasks slice per task",
                line: format!("0::/ecstasks.slice/ecstasks-5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e.slice/docker-{CID}.scope"),
                want: CgroupInfo {
                    container_id: Some(CID.into()),
                    runtime: Some("docker"),
                    ecs_task_id: Some("5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e".into()),
                    ..Default::default()
                },
            },
            Case {
                source: "Slurm task/cgroup plugin, cgroup v1",
                line:
                    "4:devices:/slurm/uid_1001/job_4711/step_0/task_0\n3:memory:/slurm/uid_1001/job_4711/step_0/task_0"
                        .into(),
                want: CgroupInfo { slurm_job_id: Some("4711".into()), slurm_uid: Some(1001), ..Default::default() },
            },
            Case {
                source: "Slurm cgroup/v2 plugin: jobs under slurmstepd.scope",
                line: "0::/system.slice/slurmstepd.scope/job_4711/step_batch/user/task_0".into(),
                want: CgroupInfo { slurm_job_id: Some("4711".into()), ..Default::default() },
            },
            Case {
                source: "systemd service on a bare-metal host, cgroup v2",
                line: "0::/system.slice/vllm-server.service".into(),
                want: CgroupInfo { systemd_unit: Some("vllm-server.service".into()), ..Default::default() },
            },
            Case {
                source: "interactive user session, cgroup v2 (a plain process: the Unix user names it)",
                line: "0::/user.slice/user-1000.slice/session-3.scope".into(),
                want: CgroupInfo::default(),
            },
            Case {
                source: "hybrid v1/v2 host: only the v1 controllers say more than the unified line",
                line: format!("12:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{CID}\n0::/"),
                want: pod(None),
            },
        ]
    }

    #[test]
    fn every_known_cgroup_format_yields_its_container_pod_task_job_or_service() {
        for c in cases() {
            assert_eq!(parse(&c.line), c.want, "{}:\n{}", c.source, c.line);
        }
    }

    #[test]
    fn garbage_yields_nothing_rather_than_a_wrong_identity() {
        for line in [
            "",
            "not a cgroup file",
            "0::/kubepods.slice/kubepods-podnot-a-uid.slice/cri-containerd-xyz.scope",
            "1:cpu:/docker/short",
            "0::/ecstasks.slice/ecstasks-.slice",
        ] {
            assert_eq!(parse(line), CgroupInfo::default(), "{line:?}");
        }
    }
}
