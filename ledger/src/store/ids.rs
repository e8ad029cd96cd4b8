//! The writer's cache of row ids (nodes, GPUs, workloads, owners, prices), so that a steady stream of batches
//! does not write them again; and the writer itself, its connection with that cache.

use std::collections::{HashMap, HashSet};

use gpucost_rules::owner::Ownership;
use gpucost_types::batch::{Device, Identity, Node, Workload};
use gpucost_types::stage::Attributed;

use super::owners::{insert_owner, owner_row};
use crate::sql::Db;
use crate::{LedgerError, sql_params};

/// Ids of rows the writer has already upserted, so a steady stream of batches does not re-write them.
/// Cleared whenever a transaction or savepoint rolls back, since ids it handed out may be gone.
#[derive(Default)]
pub(super) struct IdCache {
    pub(super) nodes: HashMap<(String, String), (i64, Node)>,
    /// Per (cluster, GPU UUID): its id, the node it was last seen on, and what it is.
    pub(super) gpus: HashMap<(String, String), (i64, i64, Device)>,
    /// GPU UUIDs the ledger holds under more than one cluster: only their batches look for other clusters'
    /// time on the same UUID (a single writer sees every GPU row made, so the set is complete).
    pub(super) contested: HashSet<String>,
    pub(super) workloads: HashMap<String, (i64, Identity)>,
    /// Last price recorded per node: (µ$/h, GPUs, source).
    pub(super) prices: HashMap<i64, (Option<i64>, u32, String)>,
    /// Latest owner recorded per workload, and from when (its `workload_owners.from_ns`).
    pub(super) owners: HashMap<i64, (u64, Ownership)>,
    /// Per GPU, its latest coverage range (the one with the greatest start): the next interval usually
    /// extends it, one UPDATE.
    pub(super) coverage: HashMap<i64, (i64, i64)>,
    /// Per (cluster, agent, boot), its latest range of stored batch numbers, likewise.
    pub(super) seqs: HashMap<(String, String, String), (i64, i64)>,
}

pub(super) struct Writer<C> {
    pub(super) conn: C,
    pub(super) ids: IdCache,
}

impl IdCache {
    /// The owner row (`workload_owners.from_ns`) that GPU time of `workload_id` from `at` is billed to, given
    /// the owner `o` resolved for it: the latest row when it names `o` and began by `at`; for a batch that arrives
    /// after a later change, the row in force at `at` when it names `o`; else a new row from `at`. Usage rows
    /// keep that key (`usage_buckets.owner_from`), so recording a change never moves GPU time already stored.
    pub(super) fn owner_from(
        &mut self,
        tx: &impl Db,
        workload_id: i64,
        at: u64,
        o: &Ownership,
    ) -> Result<i64, LedgerError> {
        let latest = match self.owners.get(&workload_id) {
            Some(known) => Some(known.clone()),
            None => owner_row(tx, workload_id, i64::MAX)?,
        };
        match &latest {
            Some((from, known)) if *from <= at && known == o => return Ok(*from as i64),
            Some((from, _)) if *from > at => {
                // A late batch: billed to the owner in force when its time was used, the latest row left as it is.
                if let Some((from, known)) = owner_row(tx, workload_id, at as i64)?
                    && known == *o
                {
                    return Ok(from as i64);
                }
                insert_owner(tx, workload_id, at, o)?;
                return Ok(at as i64);
            }
            _ => {}
        }
        insert_owner(tx, workload_id, at, o)?;
        self.owners.insert(workload_id, (at, o.clone()));
        Ok(at as i64)
    }

    pub(super) fn record_price(&mut self, tx: &impl Db, node_id: i64, b: &Attributed) -> Result<(), LedgerError> {
        let price = match (&b.cost.price, &b.cost.unpriced) {
            (Some(p), _) => (Some(p.instance_micros_per_hour as i64), p.gpus, p.source.clone()),
            (None, Some(reason)) => (None, 0, format!("unpriced: {reason}")),
            (None, None) => return Ok(()),
        };
        let last = match self.prices.get(&node_id) {
            Some(known) => Some(known.clone()),
            None => tx
                .opt("SELECT instance_micros_per_hour, gpus, source FROM node_prices WHERE node_id = $1 ORDER BY effective_from_ns DESC LIMIT 1", sql_params![node_id], |r| Ok((r.get::<Option<i64>>(0)?, r.get::<u32>(1)?, r.get::<String>(2)?)))?,
        };
        if last.as_ref() != Some(&price) {
            tx.run(
                "INSERT INTO node_prices (node_id, effective_from_ns, instance_micros_per_hour, gpus, source) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (node_id, effective_from_ns) DO NOTHING", sql_params![node_id, b.start_ns as i64, price.0, price.1, price.2])?;
        }
        self.prices.insert(node_id, price);
        Ok(())
    }

    pub(super) fn node_id(&mut self, tx: &impl Db, node: &Node) -> Result<i64, LedgerError> {
        let key = (node.cluster.clone(), node.name.clone());
        if let Some((id, known)) = self.nodes.get(&key)
            && known == node
        {
            return Ok(*id);
        }
        let id: i64 = tx.one(
            "INSERT INTO nodes (cluster, name, instance_type, capacity_type, region, zone, labels_json) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (cluster, name) DO UPDATE SET instance_type = excluded.instance_type, capacity_type = excluded.capacity_type,
               region = excluded.region, zone = excluded.zone, labels_json = excluded.labels_json
             RETURNING node_id", sql_params![
                node.cluster,
                node.name,
                node.instance_type,
                node.capacity_type,
                node.region,
                node.zone,
                serde_json::to_string(&node.labels).unwrap_or_else(|_| "{}".into())
            ],
            |r| r.get(0),
        )?;
        self.nodes.insert(key, (id, node.clone()));
        Ok(id)
    }

    /// The id of GPU `d` of `cluster` (a GPU is its cluster's: the same UUID reported by another cluster is
    /// another row), seen now on `node_id`.
    pub(super) fn gpu_id(&mut self, tx: &impl Db, cluster: &str, node_id: i64, d: &Device) -> Result<i64, LedgerError> {
        let key = (cluster.to_string(), d.uuid.clone());
        if let Some((id, on_node, known)) = self.gpus.get(&key)
            && *on_node == node_id
            && known == d
        {
            return Ok(*id);
        }
        let id: i64 = tx.one(
            "INSERT INTO gpus (cluster, uuid, node_id, model, memory_total_bytes, mig_parent_uuid, mig_profile) VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (cluster, uuid) DO UPDATE SET node_id = excluded.node_id, model = excluded.model,
               memory_total_bytes = excluded.memory_total_bytes, mig_parent_uuid = excluded.mig_parent_uuid, mig_profile = excluded.mig_profile
             RETURNING gpu_id", sql_params![cluster, d.uuid, node_id, d.model, d.memory_total_bytes as i64, d.mig_parent_uuid, d.mig_profile], |r| r.get(0))?;
        let clusters: i64 = tx.one("SELECT COUNT(*) FROM gpus WHERE uuid = $1", sql_params![d.uuid], |r| r.get(0))?;
        if clusters > 1 {
            self.contested.insert(d.uuid.clone());
        }
        self.gpus.insert(key, (id, node_id, d.clone()));
        Ok(id)
    }

    pub(super) fn workload_id(&mut self, tx: &impl Db, w: &Workload) -> Result<i64, LedgerError> {
        // A workload whose identity changed (a relabelled pod) is written again.
        if let Some((id, known)) = self.workloads.get(&w.key)
            && *known == w.identity
        {
            return Ok(*id);
        }
        let i = &w.identity;
        let json = serde_json::to_string(i).map_err(|e| LedgerError::Io(e.to_string()))?;
        let id: i64 = tx.one(
            "INSERT INTO workloads (key, kind, namespace, pod, container, controller_kind, controller_name, ecs_task_arn, slurm_job_id, user_name, identity_json)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
             ON CONFLICT (key) DO UPDATE SET kind = excluded.kind, namespace = excluded.namespace, pod = excluded.pod,
               container = excluded.container, controller_kind = excluded.controller_kind,
               controller_name = excluded.controller_name, ecs_task_arn = excluded.ecs_task_arn,
               slurm_job_id = excluded.slurm_job_id, user_name = excluded.user_name, identity_json = excluded.identity_json
             RETURNING workload_id", sql_params![w.key, i.kind.as_str(), i.namespace, i.pod, i.container, i.controller_kind, i.controller_name, i.ecs_task_arn, i.slurm_job_id, i.user, json],
            |r| r.get(0),
        )?;
        tx.run("DELETE FROM workload_labels WHERE workload_id = $1", sql_params![id])?;
        // Pod labels under their own keys; the allow-listed environment (MLFLOW_RUN_ID, …) as `env:<key>`.
        let env = i.env.iter().map(|(k, v)| (format!("env:{k}"), v));
        for (k, v) in i.labels.iter().map(|(k, v)| (k.clone(), v)).chain(env) {
            tx.run("INSERT INTO workload_labels (workload_id, key, value) VALUES ($1, $2, $3)", sql_params![id, k, v])?;
        }
        self.workloads.insert(w.key.clone(), (id, w.identity.clone()));
        Ok(id)
    }
}
