//! Where Data Exports deliveries are read from: a local folder (a copy of the bucket's prefix, as `aws s3
//! sync` leaves it) or an S3 bucket and prefix (aws-sdk-s3, the standard credential chain). Keys are
//! `/`-separated paths under the folder or prefix's bucket; a file's ETag is S3's, or the SHA-256 of a local
//! file's bytes.

use std::path::PathBuf;

use super::manifest::{self, Manifest};

pub enum Source {
    Dir(PathBuf),
    #[cfg(feature = "aws")]
    S3(S3),
}

impl Source {
    /// `s3://bucket/prefix`, with clients from the standard AWS chain; `endpoint_url` for an S3-compatible
    /// endpoint (an emulator in tests).
    #[cfg(feature = "aws")]
    pub async fn s3(uri: &str, endpoint_url: Option<&str>) -> Result<Self, String> {
        let rest = uri.strip_prefix("s3://").ok_or_else(|| format!("{uri:?} is not an s3://bucket/prefix URI"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("{uri:?} names no bucket"));
        }
        Ok(Self::S3(S3::new(bucket, prefix, endpoint_url).await))
    }

    /// What it is, for messages.
    pub fn describe(&self) -> String {
        match self {
            Self::Dir(p) => p.display().to_string(),
            #[cfg(feature = "aws")]
            Self::S3(s) => format!("s3://{}/{}", s.bucket, s.prefix),
        }
    }

    /// Every manifest key, in order.
    pub async fn manifests(&self) -> Result<Vec<String>, String> {
        let mut keys = match self {
            Self::Dir(root) => {
                let root = root.clone();
                tokio::task::spawn_blocking(move || walk(&root)).await.map_err(|e| e.to_string())??
            }
            #[cfg(feature = "aws")]
            Self::S3(s) => s.list().await?,
        };
        keys.retain(|k| manifest::is_manifest_key(k));
        keys.sort();
        Ok(keys)
    }

    /// The bytes of `key`.
    pub async fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        match self {
            Self::Dir(root) => {
                let path = root.join(key);
                // off the async threads: the runtime's `fs` feature is not one the collector turns on
                tokio::task::spawn_blocking(move || {
                    std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))
                })
                .await
                .map_err(|e| format!("reading {key}: {e}"))?
            }
            #[cfg(feature = "aws")]
            Self::S3(s) => s.get(key).await,
        }
    }

    /// The ETag of `key`.
    pub async fn etag(&self, key: &str) -> Result<String, String> {
        match self {
            Self::Dir(_) => {
                use sha2::Digest;
                Ok(hex::encode(sha2::Sha256::digest(self.get(key).await?)))
            }
            #[cfg(feature = "aws")]
            Self::S3(s) => s.etag(key).await,
        }
    }

    /// The key in this source of a data file the manifest lists (`s3://bucket/key`).
    pub fn data_key(&self, m: &Manifest, uri: &str) -> Result<String, String> {
        let (bucket, key) = manifest::s3_uri(uri)
            .ok_or_else(|| format!("manifest {}: data file {uri:?} is not an s3:// URI", m.key))?;
        #[cfg(not(feature = "aws"))]
        let _ = bucket;
        match self {
            Self::Dir(_) => {
                let under = manifest::key_under_export(key, &m.export)
                    .ok_or_else(|| format!("manifest {}: data file {uri:?} is not under {}/data/", m.key, m.export))?;
                Ok(format!("{}{under}", manifest::export_folder(&m.key)))
            }
            #[cfg(feature = "aws")]
            Self::S3(s) if bucket == s.bucket => Ok(key.to_string()),
            #[cfg(feature = "aws")]
            Self::S3(s) => Err(format!("manifest {}: data file {uri:?} is not in bucket {}", m.key, s.bucket)),
        }
    }
}

/// Every file under `root`, as `/`-separated keys relative to it.
fn walk(root: &std::path::Path) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).map_err(|e| format!("{}: {e}", dir.display()))? {
            let entry = entry.map_err(|e| format!("{}: {e}", dir.display()))?;
            let path = entry.path();
            if entry.file_type().map_err(|e| format!("{}: {e}", path.display()))?.is_dir() {
                dirs.push(path);
            } else if let Ok(rel) = path.strip_prefix(root) {
                out.push(rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/"));
            }
        }
    }
    Ok(out)
}

/// An S3 bucket and prefix.
#[cfg(feature = "aws")]
pub struct S3 {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
}

#[cfg(feature = "aws")]
impl S3 {
    async fn new(bucket: &str, prefix: &str, endpoint_url: Option<&str>) -> Self {
        use std::time::Duration;
        let timeouts = aws_config::timeout::TimeoutConfig::builder()
            .operation_timeout(Duration::from_secs(300))
            .connect_timeout(Duration::from_secs(5))
            .build();
        let config = crate::discover::sdk_config(endpoint_url, timeouts).await;
        // An emulator answers path-style requests only.
        let s3 = aws_sdk_s3::config::Builder::from(&config).force_path_style(endpoint_url.is_some()).build();
        Self { client: aws_sdk_s3::Client::from_conf(s3), bucket: bucket.to_string(), prefix: prefix.to_string() }
    }

    async fn list(&self) -> Result<Vec<String>, String> {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let out = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .set_continuation_token(token)
                .send()
                .await
                .map_err(|e| self.failed("s3:ListBucket", &self.prefix, &e))?;
            keys.extend(out.contents().iter().filter_map(|o| o.key().map(str::to_string)));
            token = out.next_continuation_token().map(str::to_string);
            if token.is_none() {
                return Ok(keys);
            }
        }
    }

    async fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed("s3:GetObject", key, &e))?;
        let body = out.body.collect().await.map_err(|e| format!("s3://{}/{key}: reading it: {e}", self.bucket))?;
        Ok(body.into_bytes().to_vec())
    }

    async fn etag(&self, key: &str) -> Result<String, String> {
        let out = self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.failed("s3:GetObject", key, &e))?;
        Ok(out.e_tag().unwrap_or_default().trim_matches('"').to_string())
    }

    /// An SDK error with its causes, naming the IAM action and the object.
    fn failed(&self, action: &str, key: &str, e: &dyn std::error::Error) -> String {
        let mut reason = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            reason.push_str(&format!(": {s}"));
            source = s.source();
        }
        format!("s3://{}/{key}: {action} failed: {reason}", self.bucket)
    }
}
