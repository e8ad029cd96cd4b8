//! moto, the AWS API emulator, as a server on a loopback port.

use super::*;

/// moto's AWS emulator in server mode, on a loopback port; killed when dropped.
pub struct Moto {
    pub proc: Proc,
    pub port: u16,
    python: PathBuf,
}

impl Moto {
    /// Starts `moto_server` from the venv `scripts/test` installs (`GPUCOST_MOTO_SERVER`, else
    /// `~/.cache/gpucost/venv/bin/moto_server`). `None` when it is not installed — which fails the test
    /// run when `CI=true`: under CI a missing peer is an error, never a skip.
    pub fn start() -> Option<Self> {
        Self::start_with(None, &[])
    }

    /// moto_server started by `launcher` (a Python script run by the venv's interpreter, taking moto_server's
    /// arguments) when given, with `env` (e.g. `MOTO_RECORDER_FILEPATH`).
    pub fn start_with(launcher: Option<&Path>, env: &[(&str, &str)]) -> Option<Self> {
        let server = installed_peer("moto", "GPUCOST_MOTO_SERVER", "venv/bin/moto_server", "")?;
        let python = server.with_file_name("python");
        let mut command = match launcher {
            Some(script) => {
                let mut c = Command::new(&python);
                c.arg(script);
                c
            }
            None => Command::new(&server),
        };
        let port = free_port();
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto_server");
        let moto = Self { proc: Proc(child), port, python };
        let deadline = Instant::now() + Duration::from_secs(30);
        while ureq::get(&format!("{}/moto-api/", moto.url())).call().is_err() {
            assert!(Instant::now() < deadline, "moto_server did not answer on port {port} within 30 s");
            std::thread::sleep(Duration::from_millis(100));
        }
        Some(moto)
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Runs a boto3 script against this moto (`ENDPOINT`, `kw` for clients and `OUT`, a file the script
    /// may write, are defined for it); panics with its output if it fails.
    pub fn boto3_with_out(&self, out: &Path, script: &str) {
        let preamble = format!(
            "import boto3, json\nENDPOINT = {:?}\nOUT = {:?}\nkw = dict(endpoint_url=ENDPOINT, region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n",
            self.url(),
            out.display().to_string()
        );
        let out = Command::new(&self.python).arg("-c").arg(format!("{preamble}{script}")).output().expect("run python");
        assert!(
            out.status.success(),
            "boto3 script failed:\n{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
