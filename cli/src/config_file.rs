//! A TOML configuration file that can say everything the flags say: its keys are the flags' long names
//! (`grpc = "0.0.0.0:50051"`, `raw-retention = "7d"`, `owner-rules = ["namespace-owner", "unix-user"]`,
//! `insecure = true`; `_` may stand for `-`), and the files the flags name (prices, budgets, owner rules,
//! auth) are named the same way. Its settings become the flags' defaults, so a flag on the command line or
//! its environment variable still overrides the file. Every key must be a flag of the command and every value
//! one that flag takes: checked, with the file and key named, before the command runs.

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use clap::{Arg, ArgAction, Command};

/// What is wrong with a configuration file, naming the file and the key.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    #[error("cannot read the configuration file {file}: {reason}")]
    Read { file: PathBuf, reason: String },
    #[error("{file}: not valid TOML: {reason}")]
    Syntax { file: PathBuf, reason: String },
    #[error("{file}: unknown key `{key}` for `{command}`{hint}")]
    UnknownKey { file: PathBuf, key: String, command: String, hint: String },
    #[error("{file}: key `{key}`: {reason}")]
    BadValue { file: PathBuf, key: String, reason: String },
}

/// One setting's value, as TOML wrote it.
#[derive(Debug, Clone, PartialEq)]
enum Value {
    One(String),
    Many(Vec<String>),
    Flag(bool),
}

/// A parsed configuration file: its path and its settings, in the file's order.
#[derive(Debug, Clone)]
pub struct ConfigFile {
    pub path: PathBuf,
    settings: Vec<(String, Value)>,
}

impl ConfigFile {
    /// Reads and parses `path`.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::Read { file: path.to_path_buf(), reason: e.to_string() })?;
        Self::parse(path, &text)
    }

    /// Parses `text`, the contents of `path`: top-level keys of strings, numbers, booleans, dates or arrays of
    /// them.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let file = path.to_path_buf();
        let table: toml::Table = text.parse().map_err(|e: toml::de::Error| ConfigError::Syntax {
            file: file.clone(),
            reason: e.message().to_string(),
        })?;
        let scalar = |v: &toml::Value| match v {
            toml::Value::String(s) => Some(s.clone()),
            toml::Value::Integer(i) => Some(i.to_string()),
            toml::Value::Float(f) => Some(f.to_string()),
            toml::Value::Boolean(b) => Some(b.to_string()),
            toml::Value::Datetime(d) => Some(d.to_string()),
            _ => None,
        };
        let mut settings = Vec::new();
        for (key, v) in &table {
            let bad =
                |reason: &str| ConfigError::BadValue { file: file.clone(), key: key.clone(), reason: reason.into() };
            let value = match v {
                toml::Value::Boolean(b) => Value::Flag(*b),
                toml::Value::Array(items) => Value::Many(
                    items
                        .iter()
                        .map(scalar)
                        .collect::<Option<Vec<_>>>()
                        .ok_or_else(|| bad("an array of tables or arrays; give strings or numbers"))?,
                ),
                toml::Value::Table(_) => {
                    return Err(bad("a table; settings are top-level keys named as the flags are"));
                }
                other => Value::One(scalar(other).unwrap_or_default()),
            };
            settings.push((key.replace('_', "-"), value));
        }
        Ok(Self { path: file, settings })
    }

    /// The keys, in the file's order (`_` written as `-`).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.settings.iter().map(|(k, _)| k.as_str())
    }
}

/// The file `argv` names with `--config FILE` or `--config=FILE`, else the one in the environment variable `env`.
pub fn path_from(argv: &[OsString], env: &str) -> Option<PathBuf> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let a = a.to_string_lossy();
        if a == "--" {
            break;
        }
        if a == "--config" {
            return args.next().map(PathBuf::from);
        }
        if let Some(path) = a.strip_prefix("--config=") {
            return Some(PathBuf::from(path));
        }
    }
    std::env::var_os(env).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// The subcommand `argv` runs: its first word that is not a flag or a global flag's value (`globals_with_value`,
/// e.g. `--log-format`).
pub fn subcommand_from<'a>(argv: &'a [OsString], globals_with_value: &[&str]) -> Option<&'a OsStr> {
    let mut args = argv.iter().skip(1);
    while let Some(a) = args.next() {
        let text = a.to_string_lossy();
        if globals_with_value.contains(&text.as_ref()) {
            args.next();
        } else if !text.starts_with('-') {
            return Some(a.as_os_str());
        }
    }
    None
}

/// The flags of `command` (a subcommand of it when `subcommand` is given, with the root's global flags) the
/// file may set: every flag with a long name but `--help`, `--version`, and `--config` with its
/// `--check-config` and `--config-example`.
fn settable<'a>(root: &'a Command, subcommand: Option<&str>) -> Vec<&'a Arg> {
    let target = subcommand.and_then(|s| root.find_subcommand(s)).unwrap_or(root);
    let globals = root.get_arguments().filter(|a| a.is_global_set());
    let own: Vec<&Arg> = target.get_arguments().collect();
    let mut args: Vec<&Arg> = own.clone();
    if subcommand.is_some() {
        args.extend(globals.filter(|g| !own.iter().any(|a| a.get_id() == g.get_id())));
    }
    args.into_iter()
        .filter(|a| {
            a.get_long()
                .is_some_and(|l| !matches!(l, "help" | "version" | "config" | "check-config" | "config-example"))
        })
        .collect()
}

fn takes_values(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Set | ArgAction::Append)
}

fn many(arg: &Arg) -> bool {
    matches!(arg.get_action(), ArgAction::Append)
        || arg.get_value_delimiter().is_some()
        || arg.get_num_args().is_some_and(|n| n.max_values() > 1)
}

/// Edit distance, for "did you mean".
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut prev = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(prev + usize::from(ca != *cb));
            prev = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

/// `command` with `file`'s settings as the defaults of the flags of `subcommand` (or of the command itself):
/// flags and environment variables still override them. Every key must name one of those flags, and every
/// value must be one the flag takes (checked with the flag's own parser).
pub fn apply(mut command: Command, subcommand: Option<&str>, file: &ConfigFile) -> Result<Command, ConfigError> {
    let name = match subcommand {
        Some(s) => format!("{} {s}", command.get_name()),
        None => command.get_name().to_string(),
    };
    let mut defaults: Vec<(clap::Id, bool, Vec<String>)> = Vec::new();
    {
        let args = settable(&command, subcommand);
        for (key, value) in &file.settings {
            let bad = |reason: String| ConfigError::BadValue { file: file.path.clone(), key: key.clone(), reason };
            let Some(arg) = args.iter().find(|a| a.get_long() == Some(key.as_str())) else {
                let near = args
                    .iter()
                    .filter_map(|a| a.get_long())
                    .map(|l| (distance(key, l), l))
                    .filter(|(d, _)| *d <= 3)
                    .min();
                return Err(ConfigError::UnknownKey {
                    file: file.path.clone(),
                    key: key.clone(),
                    command: name,
                    hint: near.map(|(_, l)| format!(" (did you mean `{l}`?)")).unwrap_or_default(),
                });
            };
            let values: Vec<String> = match (value, takes_values(arg)) {
                (Value::Flag(b), _) => vec![b.to_string()],
                (_, false) => return Err(bad("an on/off setting: give true or false".into())),
                (Value::One(v), true) => match arg.get_value_delimiter() {
                    Some(d) if many(arg) => v.split(d).map(str::to_string).collect(),
                    _ => vec![v.clone()],
                },
                (Value::Many(vs), true) if many(arg) => vs.clone(),
                (Value::Many(_), true) => return Err(bad("takes one value, not an array".into())),
            };
            if takes_values(arg) {
                // The flag's own parser, alone: without its environment variable, default or relations.
                let check = Command::new(key.clone()).no_binary_name(true).arg(
                    Arg::new("value").long("value").action(ArgAction::Set).value_parser(arg.get_value_parser().clone()),
                );
                for v in &values {
                    if let Err(e) = check.clone().try_get_matches_from(["--value", v.as_str()]) {
                        let text = e.to_string();
                        let first = text.lines().next().unwrap_or_default().trim_start_matches("error: ");
                        let first = first.replace(" for '--value <value>'", "");
                        return Err(bad(first));
                    }
                }
            }
            defaults.push((arg.get_id().clone(), arg.is_global_set(), values));
        }
    }
    for (id, global, values) in defaults {
        let set = |a: Arg| a.default_values(values.clone());
        command = match (subcommand, global) {
            (Some(s), false) => command.mut_subcommand(s, |sub| sub.mut_arg(id.clone(), set)),
            _ => command.mut_arg(id.clone(), set),
        };
    }
    Ok(command)
}

/// A commented configuration file with every setting of `subcommand` (or the command itself) and its
/// default: each key is commented out, under its flag's help and its environment variable.
pub fn example(command: &Command, subcommand: Option<&str>) -> String {
    let name = match subcommand {
        Some(s) => format!("{} {s}", command.get_name()),
        None => command.get_name().to_string(),
    };
    let mut out = format!(
        "# {name}: every setting and its default. Keys are the flags' long names; a flag on the command line\n\
         # or its environment variable overrides the file. Check a file with `{} config check FILE`.\n",
        command.get_name()
    );
    for arg in settable(command, subcommand) {
        let long = arg.get_long().unwrap_or_default();
        let help = arg.get_long_help().or_else(|| arg.get_help()).map(|h| h.to_string()).unwrap_or_default();
        out.push('\n');
        for line in help.lines() {
            out.push_str(&format!("# {line}\n").replace("#  ", "# ").replace("# \n", "#\n"));
        }
        let env = arg.get_env().map(|e| format!(", environment {}", e.to_string_lossy())).unwrap_or_default();
        out.push_str(&format!("# flag --{long}{env}\n"));
        let defaults: Vec<String> = arg
            .get_default_values()
            .iter()
            .flat_map(|v| {
                let v = v.to_string_lossy().to_string();
                match arg.get_value_delimiter() {
                    Some(d) => v.split(d).map(str::to_string).collect(),
                    None => vec![v],
                }
            })
            .collect();
        let quoted = |v: &str| {
            if v.parse::<i64>().is_ok() || v == "true" || v == "false" { v.to_string() } else { format!("{v:?}") }
        };
        let value = match (takes_values(arg), many(arg), defaults.as_slice()) {
            (false, _, _) => "false".to_string(),
            (true, true, ds) => format!("[{}]", ds.iter().map(|d| quoted(d)).collect::<Vec<_>>().join(", ")),
            (true, false, [d]) => quoted(d),
            (true, false, _) => "\"\"".to_string(),
        };
        out.push_str(&format!("# {long} = {value}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::{Parser, Subcommand};

    use super::*;

    #[derive(Debug, Parser)]
    #[command(name = "tool")]
    struct Cli {
        /// Log format.
        #[arg(long, global = true, default_value = "auto")]
        log_format: String,
        #[arg(long, global = true)]
        config: Option<PathBuf>,
        #[command(subcommand)]
        command: Sub,
    }

    #[derive(Debug, Subcommand)]
    enum Sub {
        Serve {
            /// Listen here.
            #[arg(long, default_value = "0.0.0.0:8080")]
            http: std::net::SocketAddr,
            #[arg(long, env = "TOOL_RETENTION", default_value = "7d", value_parser = humantime_like)]
            raw_retention: Duration,
            #[arg(long, value_delimiter = ',', default_value = "a,b")]
            rules: Vec<String>,
            #[arg(long)]
            insecure: bool,
            #[arg(long)]
            prices: Option<PathBuf>,
        },
        Other,
    }

    fn humantime_like(s: &str) -> Result<Duration, String> {
        let days: u64 =
            s.strip_suffix('d').and_then(|d| d.parse().ok()).ok_or(format!("{s:?} is not a number of days"))?;
        Ok(Duration::from_secs(days * 86_400))
    }

    fn run(file: &str, argv: &[&str]) -> Result<Cli, String> {
        use clap::{CommandFactory, FromArgMatches};
        let file = ConfigFile::parse(Path::new("c.toml"), file).map_err(|e| e.to_string())?;
        let command = apply(Cli::command(), Some("serve"), &file).map_err(|e| e.to_string())?;
        let matches = command.try_get_matches_from(argv).map_err(|e| e.to_string())?;
        Cli::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn the_file_sets_every_kind_of_flag_and_the_command_line_overrides_it() {
        let file = "http = \"127.0.0.1:9000\"\nraw_retention = \"30d\"\nrules = [\"x\", \"y\", \"z\"]\ninsecure = true\nprices = \"p.toml\"\nlog-format = \"json\"\n";
        let cli = run(file, &["tool", "serve"]).unwrap();
        let Sub::Serve { http, raw_retention, rules, insecure, prices } = cli.command else { panic!() };
        assert_eq!(http.to_string(), "127.0.0.1:9000");
        assert_eq!(raw_retention, Duration::from_secs(30 * 86_400));
        assert_eq!(rules, ["x", "y", "z"]);
        assert!(insecure);
        assert_eq!(prices, Some(PathBuf::from("p.toml")));
        assert_eq!(cli.log_format, "json");
        let cli = run(file, &["tool", "serve", "--http", "127.0.0.1:1"]).unwrap();
        let Sub::Serve { http, .. } = cli.command else { panic!() };
        assert_eq!(http.to_string(), "127.0.0.1:1", "the command line wins");
    }

    #[test]
    fn a_misspelt_key_or_a_bad_value_is_refused_naming_the_file_and_the_key() {
        assert_eq!(
            run("htp = \"127.0.0.1:9000\"", &["tool", "serve"]).unwrap_err(),
            "c.toml: unknown key `htp` for `tool serve` (did you mean `http`?)"
        );
        let bad = run("raw-retention = \"soon\"", &["tool", "serve"]).unwrap_err();
        assert!(bad.starts_with("c.toml: key `raw-retention`: ") && bad.contains("not a number of days"), "{bad}");
        assert_eq!(
            run("insecure = \"yes\"", &["tool", "serve"]).unwrap_err(),
            "c.toml: key `insecure`: an on/off setting: give true or false"
        );
        assert_eq!(
            run("http = [\"a\", \"b\"]", &["tool", "serve"]).unwrap_err(),
            "c.toml: key `http`: takes one value, not an array"
        );
        assert!(run("[serve]\nhttp = 1", &["tool", "serve"]).unwrap_err().contains("key `serve`: a table"));
        assert!(run("http = ", &["tool", "serve"]).unwrap_err().starts_with("c.toml: not valid TOML"));
    }

    #[test]
    fn the_file_and_the_subcommand_are_found_in_the_arguments() {
        let argv: Vec<OsString> = ["tool", "--log-format", "json", "--config=c.toml", "serve", "--http", "x"]
            .iter()
            .map(OsString::from)
            .collect();
        assert_eq!(path_from(&argv, "TOOL_CONFIG_UNSET"), Some(PathBuf::from("c.toml")));
        assert_eq!(subcommand_from(&argv, &["--log-format", "--config"]), Some(OsStr::new("serve")));
        let argv: Vec<OsString> = ["tool", "--config", "d.toml", "other"].iter().map(OsString::from).collect();
        assert_eq!(path_from(&argv, "TOOL_CONFIG_UNSET"), Some(PathBuf::from("d.toml")));
        assert_eq!(subcommand_from(&argv, &["--log-format", "--config"]), Some(OsStr::new("other")));
    }

    #[test]
    fn the_example_file_parses_and_names_every_setting() {
        use clap::CommandFactory;
        let text = example(&Cli::command(), Some("serve"));
        for key in ["http", "raw-retention", "rules", "insecure", "prices", "log-format"] {
            assert!(text.contains(&format!("# {key} = ")), "{key} missing:\n{text}");
        }
        assert!(text.contains("# flag --raw-retention, environment TOOL_RETENTION\n"), "{text}");
        assert!(text.contains("# rules = [\"a\", \"b\"]\n"), "{text}");
        // Uncommented, it is a valid file that sets every default.
        let uncommented: String = text
            .lines()
            .filter(|l| l.starts_with("# ") && l.contains(" = ") && !l.contains(": "))
            .map(|l| format!("{}\n", &l[2..]))
            .filter(|l| !l.ends_with("= \"\"\n"))
            .collect();
        run(&uncommented, &["tool", "serve"]).unwrap_or_else(|e| panic!("{e}\n{uncommented}"));
    }
}
