//! The command line: every subcommand's arguments (clap) and what each one does. `main.rs` parses
//! the command line, sets up logging and calls [`execute`].

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};

use crate::config::{Config, PluginConfig};
use crate::ops::telemetry::LogFormat;

/// Runs sandboxed WebAssembly event handlers on Kafka.
#[derive(Parser)]
#[command(name = "weft", version, about)]
pub struct Cli {
    /// Log format.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "WEFT_LOG_FORMAT")]
    pub log_format: LogFormat,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Run in production: join the consumer group and handle events until SIGINT/SIGTERM.
    Run {
        /// Configuration file.
        #[arg(short, long, default_value = "weft.toml", env = "WEFT_CONFIG")]
        config: PathBuf,
    },
    /// Run everything locally: a mock Kafka cluster, the example plugin and a stream of sample events.
    Dev {
        /// Use this Kafka cluster instead of the in-process mock one.
        #[arg(long)]
        brokers: Option<String>,
        /// Load plugins from this directory instead of the bundled example, and feed the topics
        /// they subscribe to.
        #[arg(long)]
        plugins: Option<PathBuf>,
        /// Structured-mode CloudEvents to feed those plugins (one JSON object, an array, or one
        /// per line; a scaffold's events/sample.json works): each goes to the subscriptions it
        /// matches. Without it, made-up events that match each subscription.
        #[arg(long, requires = "plugins")]
        events: Option<PathBuf>,
        /// Sample events produced per second.
        #[arg(long, default_value_t = 5)]
        rate: u32,
        /// Where to serve /metrics and the health endpoints.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
    },
    /// Load-test the whole path: produce Todo events at a fixed rate through Weft and the bundled
    /// audit plugin, then report sent, handled, dead-lettered and lost events, throughput and
    /// end-to-end latency. Exit code 1 if any event was lost.
    Load {
        /// Use this Kafka cluster (topics are created) instead of the in-process mock one.
        #[arg(long)]
        brokers: Option<String>,
        /// Events produced per second.
        #[arg(long, default_value_t = 1_000)]
        rate: u32,
        /// How long to produce, in seconds.
        #[arg(long, default_value_t = 60)]
        seconds: u64,
        /// Where to serve /metrics and the health endpoints.
        #[arg(long, default_value = "127.0.0.1:9464")]
        listen: std::net::SocketAddr,
    },
    /// Load a plugin, check it implements the handler world, and print what it describes.
    Check {
        /// The component file.
        plugin: PathBuf,
    },
    /// Create a plugin project, or promote or roll back a canary version.
    Plugin {
        #[command(subcommand)]
        command: PluginCommand,
    },
    /// Write records described in JSON files to Kafka (the examples' sample producers): a JSON
    /// array of records or one per line, each `{"topic", "key", "partition", "headers", "value"}`;
    /// a JSON `value` is written as it appears in the file, a string as its text.
    Produce {
        /// Files of records, written in order.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        #[command(flatten)]
        cluster: Cluster,
    },
    /// Inspect or replay a dead-letter topic.
    Dlq {
        #[command(subcommand)]
        command: DlqCommand,
    },
    /// Call a plugin with one event, without Kafka. Exit code: 0 handled, 3 retryable, 4 permanent,
    /// 5 stopped by the sandbox (trap, timeout, memory or fuel limit), 1 the plugin or the event
    /// could not be read.
    Invoke {
        /// The component file.
        plugin: PathBuf,
        /// The event: a structured-mode CloudEvent (JSON); with `--header`, the record's value
        /// as it stands (binary mode). `-` reads standard input.
        #[arg(long)]
        event: PathBuf,
        /// A record header, `name=value` (repeatable). Any header makes the record binary mode:
        /// give the `ce_*` attributes and `content-type` this way.
        #[arg(long = "header", value_parser = parse_key_value)]
        headers: Vec<(String, String)>,
        /// The topic the record pretends to come from.
        #[arg(long, default_value = "weft-invoke")]
        topic: String,
        /// The record key.
        #[arg(long)]
        key: Option<String>,
        /// The partition.
        #[arg(long, default_value_t = 0)]
        partition: i32,
        /// The offset.
        #[arg(long, default_value_t = 0)]
        offset: i64,
        /// The attempt number the plugin sees (retries start at 2).
        #[arg(long, default_value_t = 1)]
        attempt: u32,
        /// `key=value` pairs the plugin reads with config-get.
        #[arg(long = "set", value_parser = parse_key_value)]
        settings: Vec<(String, String)>,
        /// Check the event first against the schemas this configuration gives its topic
        /// (`[topics]`, `[schema_registry]`), as the host does before any plugin sees it.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

/// `weft plugin …`.
#[derive(Subcommand)]
pub enum PluginCommand {
    /// Write a handler project: source, the WIT, a sample event and a test that builds it and
    /// runs it through `weft invoke`. Prints the build command.
    New {
        /// The plugin's id, which becomes its file name (`<name>.wasm`) and configuration key.
        name: String,
        /// The language.
        #[arg(long, value_enum, default_value = "rust")]
        lang: crate::cli::scaffold::Lang,
        /// Where to create the project directory.
        #[arg(long, default_value = ".")]
        dir: PathBuf,
    },
    /// Make the canary `<id>.canary.wasm` the stable version: it replaces `<id>.wasm` (a running
    /// Weft watching the directory swaps it in with no event lost or handled twice).
    Promote {
        /// The plugin's id.
        id: String,
        /// The plugins directory.
        #[arg(long, env = "WEFT_PLUGINS_DIR", default_value = "plugins")]
        dir: PathBuf,
    },
    /// Take the canary `<id>.canary.wasm` out: it is set aside as `<id>.canary.wasm.rolled-back`
    /// and its keys go back to the stable version.
    RollBack {
        /// The plugin's id.
        id: String,
        /// The plugins directory.
        #[arg(long, env = "WEFT_PLUGINS_DIR", default_value = "plugins")]
        dir: PathBuf,
    },
}

/// Where the `dlq` commands find the cluster.
#[derive(clap::Args)]
pub struct Cluster {
    /// Bootstrap servers (with `--config`: instead of the file's).
    #[arg(long, env = "WEFT_KAFKA_BROKERS")]
    brokers: Option<String>,
    /// Read the `[kafka]` section of this configuration file instead (SASL/SSL settings included).
    #[arg(short, long)]
    config: Option<PathBuf>,
}

impl Cluster {
    fn kafka(&self) -> anyhow::Result<crate::config::KafkaConfig> {
        match (&self.brokers, &self.config) {
            (brokers, Some(path)) => {
                let mut kafka = Config::load(path)?.kafka;
                if let Some(brokers) = brokers {
                    kafka.brokers.clone_from(brokers);
                }
                Ok(kafka)
            }
            (Some(brokers), None) => Ok(Config::with_brokers(brokers).kafka),
            (None, None) => anyhow::bail!("give --brokers, --config, or set WEFT_KAFKA_BROKERS"),
        }
    }
}

/// `weft dlq …`.
#[derive(Subcommand)]
pub enum DlqCommand {
    /// List the records of a dead-letter topic with reason, plugin, attempts, origin and error.
    Inspect {
        /// The dead-letter topic.
        topic: String,
        #[command(flatten)]
        cluster: Cluster,
        /// One JSON object per line instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Put dead-lettered records back on their original topic (or `--to`), without the
    /// dead-letter headers; each goes only to the plugin that failed it.
    Replay {
        /// The dead-letter topic.
        topic: String,
        #[command(flatten)]
        cluster: Cluster,
        /// Write to this topic instead of each record's original topic.
        #[arg(long)]
        to: Option<String>,
        /// Only records this plugin failed.
        #[arg(long)]
        plugin: Option<String>,
        /// Only records with this reason (`permanent_error`, `retries_exhausted`, `trap`, …).
        #[arg(long)]
        reason: Option<String>,
        /// Only dead-letter offsets at or above this.
        #[arg(long)]
        from_offset: Option<i64>,
        /// Only dead-letter offsets at or below this.
        #[arg(long)]
        to_offset: Option<i64>,
        /// Refuse records already replayed this many times (loop guard).
        #[arg(long, default_value_t = 3)]
        max_replays: u32,
        /// Show what would be replayed; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
}

fn parse_key_value(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// Carries out `command`; `config` is the configuration `weft run` loaded (before logging was set
/// up, since it may ask for span export). `shutdown` resolves on Ctrl-C or SIGTERM.
pub async fn execute(
    command: Command,
    config: Option<Config>,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<ExitCode> {
    match command {
        Command::Run { .. } => {
            let config = config.context("the configuration was not loaded")?;
            crate::run(config, shutdown).await?;
        }
        Command::Dev { brokers, plugins, events, rate, listen } => {
            let options = crate::cli::dev::DevOptions {
                brokers,
                plugins_dir: plugins,
                rate,
                events,
                listen: Some(listen),
            };
            let summary = crate::cli::dev::run(options, shutdown).await?;
            println!(
                "produced {} sample events; the plugins handled {} and emitted {}",
                summary.produced, summary.handled, summary.emitted
            );
        }
        Command::Dlq { command } => return dlq(command).await,
        Command::Produce { files, cluster } => {
            let kafka = cluster.kafka()?;
            let mut records = Vec::new();
            for file in &files {
                records.extend(crate::cli::produce::read(file)?);
            }
            let written = crate::cli::produce::send(&kafka, &records).await?;
            let mut topics = std::collections::BTreeMap::<&str, usize>::new();
            for record in &records {
                *topics.entry(&record.topic).or_default() += 1;
            }
            let counts: Vec<String> = topics.iter().map(|(topic, n)| format!("{topic} {n}")).collect();
            println!("produced {written} records ({})", counts.join(", "));
        }
        Command::Load { brokers, rate, seconds, listen } => {
            let options = crate::cli::load::LoadOptions {
                brokers,
                rate,
                duration: std::time::Duration::from_secs(seconds),
                drain: std::time::Duration::from_secs(30),
                listen,
            };
            let report = crate::cli::load::run(options, |line| eprintln!("{line}")).await?;
            println!("{report}");
            if report.lost > 0 {
                return Ok(ExitCode::FAILURE);
            }
        }
        Command::Plugin { command: PluginCommand::New { name, lang, dir } } => {
            let project = crate::cli::scaffold::create(&name, lang, &dir)?;
            let shown = project.dir.display();
            println!("created {shown}");
            println!("build:  cd {shown} && {}", project.build);
            println!(
                "try:    weft invoke {shown}/{name}.wasm --event {shown}/events/sample.json --topic {name}-in"
            );
            println!("test:   {shown}/test.sh");
            println!("deploy: cp {shown}/{name}.wasm <weft plugins directory>/");
        }
        Command::Plugin { command: PluginCommand::Promote { id, dir } } => {
            let to = move_canary(&dir, &id, &format!("{id}.wasm"), "promoting")?;
            println!("promoted {id}.canary.wasm: it is {}", to.display());
        }
        Command::Plugin { command: PluginCommand::RollBack { id, dir } } => {
            let to = move_canary(&dir, &id, &format!("{id}.canary.wasm.rolled-back"), "rolling back")?;
            println!("rolled back {id}.canary.wasm: set aside as {}", to.display());
        }
        Command::Check { plugin } => {
            let loaded = crate::cli::invoke::check(&plugin, &PluginConfig::default()).await?;
            let report = serde_json::json!({
                "id": loaded.id,
                "digest": loaded.digest,
                "world": crate::sandbox::plugin::WORLD,
                "describe": loaded.description,
            });
            println!("{}", serde_json::to_string_pretty(&report)?);
        }
        Command::Invoke {
            plugin,
            event,
            headers,
            topic,
            key,
            partition,
            offset,
            attempt,
            settings,
            config,
            json,
        } => {
            let value = if event.as_os_str() == "-" {
                let mut value = Vec::new();
                std::io::Read::read_to_end(&mut std::io::stdin(), &mut value)
                    .context("reading standard input")?;
                value
            } else {
                std::fs::read(&event).with_context(|| format!("reading {}", event.display()))?
            };
            anyhow::ensure!(attempt >= 1, "--attempt starts at 1");
            let record = crate::cli::invoke::InvokeRecord {
                topic,
                partition,
                offset,
                key: key.map(String::into_bytes),
                attempt,
                headers: headers.into_iter().map(|(k, v)| (k, v.into_bytes())).collect(),
                value,
            };
            let settings = PluginConfig { config: settings.into_iter().collect(), ..PluginConfig::default() };
            let limits = crate::sandbox::plugin::Limits::from_config(&Config::with_brokers("unused:9092"));
            let schemas = match config {
                Some(path) => {
                    let config = Config::load(&path)?;
                    Some(crate::schemas::Schemas::open(&config, crate::ops::metrics::Metrics::new()).await?)
                }
                None => None,
            };
            let invocation =
                crate::cli::invoke::invoke_checked(&plugin, &record, &settings, limits, schemas.as_deref())
                    .await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&invocation.to_json(&record))?);
            } else {
                print!("{}", invocation.report(&record));
            }
            return Ok(ExitCode::from(invocation.exit_code()));
        }
    }
    Ok(ExitCode::SUCCESS)
}

const DLQ_IDLE: std::time::Duration = std::time::Duration::from_secs(2);

async fn dlq(command: DlqCommand) -> anyhow::Result<ExitCode> {
    use crate::cli::dlq as replay;
    match command {
        DlqCommand::Inspect { topic, cluster, json } => {
            let letters = replay::read(&cluster.kafka()?, &topic, DLQ_IDLE).await?;
            if json {
                for letter in &letters {
                    println!("{}", serde_json::to_string(letter)?);
                }
            } else {
                print!("{}", replay::table(&letters));
                println!("{} dead-lettered record(s) in {topic}", letters.len());
            }
        }
        DlqCommand::Replay {
            topic,
            cluster,
            to,
            plugin,
            reason,
            from_offset,
            to_offset,
            max_replays,
            dry_run,
        } => {
            let kafka = cluster.kafka()?;
            let letters = replay::read(&kafka, &topic, DLQ_IDLE).await?;
            let filter = replay::Filter { plugin, reason, from_offset, to_offset };
            let plan = replay::plan(&letters, &filter, to.as_deref(), max_replays);
            for letter in &plan.refused {
                eprintln!(
                    "refused {}/{}: replayed {} times already (--max-replays {max_replays})",
                    letter.partition, letter.offset, letter.replays
                );
            }
            let verb = if dry_run { "would replay" } else { "replaying" };
            for (letter, destination) in &plan.replay {
                println!(
                    "{verb} {}/{} ({}) to {destination}",
                    letter.partition, letter.offset, letter.reason
                );
            }
            let done = if dry_run { 0 } else { replay::execute(&kafka, &plan).await? };
            println!(
                "{} replayed, {} planned, {} twin(s) skipped, {} refused by the loop guard",
                done,
                plan.replay.len(),
                plan.twins,
                plan.refused.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Moves canary `<id>.canary.wasm` in `dir` to `name` (a running Weft watching `dir` follows);
/// returns where it went.
fn move_canary(dir: &std::path::Path, id: &str, name: &str, doing: &str) -> anyhow::Result<PathBuf> {
    let canary = dir.join(format!("{id}.canary.wasm"));
    let to = dir.join(name);
    std::fs::rename(&canary, &to)
        .with_context(|| format!("{doing} {}: moving it to {}", canary.display(), to.display()))?;
    Ok(to)
}
