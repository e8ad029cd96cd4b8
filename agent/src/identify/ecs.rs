//! ECS GPU container instances: container → task ARN and family, from the ECS agent's introspection API
//! (`GET http://localhost:51678/v1/tasks`), so the collector can resolve task tags later.

use std::collections::HashMap;
use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcsTask {
    pub arn: String,
    pub family: String,
    /// From the ARN (`arn:aws:ecs:<region>:<account>:task/<cluster>/<id>`); empty for old-format ARNs.
    pub cluster: String,
}

#[derive(Deserialize)]
struct Tasks {
    #[serde(rename = "Tasks", default)]
    tasks: Vec<Task>,
}

#[derive(Deserialize)]
struct Task {
    #[serde(rename = "Arn")]
    arn: String,
    #[serde(rename = "Family", default)]
    family: String,
    #[serde(rename = "Containers", default)]
    containers: Vec<Container>,
}

#[derive(Deserialize)]
struct Container {
    #[serde(rename = "DockerId", default)]
    docker_id: String,
}

/// Docker container ID → its task, from a `/v1/tasks` answer.
pub fn parse_tasks(json: &str) -> Result<HashMap<String, EcsTask>, serde_json::Error> {
    let tasks: Tasks = serde_json::from_str(json)?;
    let mut out = HashMap::new();
    for t in tasks.tasks {
        let cluster = t
            .arn
            .split(":task/")
            .nth(1)
            .and_then(|rest| rest.rsplit_once('/'))
            .map(|(c, _)| c.to_string())
            .unwrap_or_default();
        let task = EcsTask { arn: t.arn, family: t.family, cluster };
        for c in t.containers.into_iter().filter(|c| !c.docker_id.is_empty()) {
            out.insert(c.docker_id, task.clone());
        }
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
#[error("ECS introspection API at {url}: {reason}")]
pub struct EcsError {
    pub url: String,
    pub reason: String,
}

/// Fetches and parses `<base>/v1/tasks` (blocking; call it off the async runtime).
pub fn fetch(base: &str, timeout: Duration) -> Result<HashMap<String, EcsTask>, EcsError> {
    let url = format!("{}/v1/tasks", base.trim_end_matches('/'));
    let err = |reason: String| EcsError { url: url.clone(), reason };
    let body = ureq::get(&url)
        .config()
        .timeout_global(Some(timeout))
        .build()
        .call()
        .map_err(|e| err(e.to_string()))?
        .into_body()
        .read_to_string()
        .map_err(|e| err(e.to_string()))?;
    parse_tasks(&body).map_err(|e| err(format!("unexpected answer: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape the ECS agent's introspection API returns (trimmed to one task).
    const TASKS: &str = r#"{"Tasks":[{"Arn":"arn:aws:ecs:us-east-1:123456789012:task/gpu-batch/5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e",
      "DesiredStatus":"RUNNING","KnownStatus":"RUNNING","Family":"vision-batch-embed","Version":"7",
      "Containers":[{"DockerId":"4f2c8e3a9b1d","DockerName":"ecs-vision-batch-embed-7-main-e4b5","Name":"main"},
                    {"DockerId":"9a8b7c6d5e4f","DockerName":"ecs-vision-batch-embed-7-sidecar","Name":"sidecar"}]}]}"#;

    #[test]
    fn every_container_of_a_task_maps_to_its_arn_family_and_cluster() {
        let m = parse_tasks(TASKS).unwrap();
        assert_eq!(m.len(), 2);
        let t = &m["4f2c8e3a9b1d"];
        assert_eq!(t.family, "vision-batch-embed");
        assert_eq!(t.cluster, "gpu-batch");
        assert!(t.arn.ends_with("/5a8c1d2e3f4b4a5c9d8e7f6a5b4c3d2e"));
        assert_eq!(m["9a8b7c6d5e4f"], *t);
    }

    #[test]
    fn an_unexpected_answer_is_an_error_not_an_empty_map() {
        assert!(parse_tasks("<html>").is_err());
        assert!(parse_tasks(r#"{"Tasks":{}}"#).is_err());
        assert_eq!(parse_tasks("{}").unwrap().len(), 0);
    }
}
