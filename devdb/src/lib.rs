//! A private PostgreSQL cluster for development and tests, so nobody sets up a database by
//! hand, and a fresh database per test so tests run in parallel without seeing each other.
//!
//! * [`Cluster`] runs `initdb` / `pg_ctl` from the PostgreSQL server binaries (as the
//!   `postgres` OS user when we are root, since PostgreSQL refuses to run as root), listening
//!   on 127.0.0.1 only, on a free port, with trust authentication on loopback only.
//! * [`fresh_database`] migrates a template database once per set of migrations and clones it
//!   (`CREATE DATABASE … TEMPLATE …`) for each test: a copy takes milliseconds.
//!
//! When `DATABASE_URL` is set, that server is used instead and no cluster is started.

pub mod procs;

use sqlx::migrate::Migrator;
use sqlx::{Connection, Executor, PgConnection};
use std::fs::{self, File, OpenOptions};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use thiserror::Error;

#[derive(Debug, Error)]
pub enum DevDbError {
    #[error(
        "PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. Install them with \
         `apt-get install postgresql-15` (Debian/Ubuntu; the binaries land in \
         /usr/lib/postgresql/15/bin), point PG_BIN at their folder, or set DATABASE_URL to a \
         server you already run"
    )]
    NoServerBinaries,
    #[error("running as root but there is no `postgres` OS user to run PostgreSQL as (PostgreSQL refuses to run as root): create it with `adduser --system --group postgres`")]
    NoPostgresUser,
    #[error("{what} failed: {detail}")]
    Command { what: String, detail: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("database: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("migrations: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("bad database URL {0:?}")]
    BadUrl(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DevDbError + '_ {
    move |source| DevDbError::Io { path: path.to_path_buf(), source }
}

/// Where the PostgreSQL server binaries are: `PG_BIN`, else the newest of 15..=17 that Debian
/// installs under /usr/lib/postgresql, else `pg_config --bindir`.
pub fn server_bin_dir() -> Result<PathBuf, DevDbError> {
    find_server_bin_dir(std::env::var_os("PG_BIN").map(PathBuf::from))
}

fn find_server_bin_dir(pg_bin: Option<PathBuf>) -> Result<PathBuf, DevDbError> {
    let has_all = |d: &Path| ["initdb", "pg_ctl", "postgres"].iter().all(|b| d.join(b).is_file());
    if let Some(dir) = pg_bin {
        return if has_all(&dir) { Ok(dir) } else { Err(DevDbError::NoServerBinaries) };
    }
    for v in ["15", "16", "17"] {
        let dir = PathBuf::from(format!("/usr/lib/postgresql/{v}/bin"));
        if has_all(&dir) {
            return Ok(dir);
        }
    }
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
        let dir = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if out.status.success() && has_all(&dir) {
            return Ok(dir);
        }
    }
    Err(DevDbError::NoServerBinaries)
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A private PostgreSQL cluster living in one folder: `data/` (the cluster), `port`, `log`.
#[derive(Clone, Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
}

/// Options for [`Cluster::start`].
#[derive(Clone, Copy, Debug, Default)]
pub struct StartOptions {
    /// Trade durability for speed (fsync off): for throwaway test clusters only.
    pub throwaway: bool,
}

impl Cluster {
    /// The cluster in `dir` (nothing is started or created yet).
    pub fn new(dir: impl Into<PathBuf>) -> Result<Self, DevDbError> {
        Ok(Self { dir: dir.into(), bin: server_bin_dir()? })
    }

    /// The default development cluster: `VESSEL_PG_DIR`, else `.vessel/pg` in the workspace.
    pub fn default_dir() -> PathBuf {
        if let Ok(d) = std::env::var("VESSEL_PG_DIR") {
            return PathBuf::from(d);
        }
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(".vessel").join("pg")
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Runs a server binary, as `postgres` when we are root.
    fn run(&self, what: &str, args: &[&str]) -> Result<String, DevDbError> {
        let exe = self.bin.join(what);
        let mut cmd = if is_root() {
            let ok = Command::new("id").args(["-u", "postgres"]).output().map(|o| o.status.success());
            if !ok.unwrap_or(false) {
                return Err(DevDbError::NoPostgresUser);
            }
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&exe);
            c
        } else {
            Command::new(&exe)
        };
        cmd.args(args).current_dir("/");
        let out = cmd.output().map_err(io(&exe))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            let log = fs::read_to_string(self.dir.join("log")).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(15).collect();
            Err(DevDbError::Command {
                what: format!("{what} {}", args.join(" ")),
                detail: format!(
                    "{}{}\n{}",
                    String::from_utf8_lossy(&out.stderr),
                    String::from_utf8_lossy(&out.stdout),
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ),
            })
        }
    }

    /// Makes `dir` ours and the `postgres` user's (when root); PostgreSQL must be able to
    /// reach it, so every parent must be searchable by others.
    fn prepare_dir(&self) -> Result<(), DevDbError> {
        fs::create_dir_all(&self.dir).map_err(io(&self.dir))?;
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres:postgres"]).arg(&self.dir).status().map_err(io(&self.dir))?;
            if !status.success() {
                return Err(DevDbError::Command { what: "chown".into(), detail: self.dir.display().to_string() });
            }
            let reachable = Command::new("runuser")
                .args(["-u", "postgres", "--", "test", "-w"])
                .arg(&self.dir)
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if !reachable {
                return Err(DevDbError::Command {
                    what: "prepare the cluster folder".into(),
                    detail: format!(
                        "the postgres user cannot reach {} (a parent folder is not searchable by others); \
                         set VESSEL_PG_DIR to a folder it can reach, e.g. /tmp/vessel-pg",
                        self.dir.display()
                    ),
                });
            }
        }
        Ok(())
    }

    fn lock(&self) -> Result<File, DevDbError> {
        let path = self.dir.join(".lock");
        let f = OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io(&path))?;
        f.lock().map_err(io(&path))?;
        Ok(f)
    }

    /// The URL of the running cluster, if it runs and answers.
    pub fn running_url(&self) -> Option<String> {
        let port: u16 = fs::read_to_string(self.dir.join("port")).ok()?.trim().parse().ok()?;
        self.data().join("postmaster.pid").exists().then_some(())?;
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500)).ok()?;
        Some(url_for(port, "postgres"))
    }

    /// Starts the cluster (creating it first if needed) unless it already runs; returns the
    /// URL of its `postgres` database. Safe to call from many processes at once.
    pub fn start(&self, opts: StartOptions) -> Result<String, DevDbError> {
        self.prepare_dir()?;
        let _lock = self.lock()?;
        if let Some(url) = self.running_url() {
            return Ok(url);
        }
        let data = self.data();
        if !data.join("PG_VERSION").exists() {
            let data_s = data.to_string_lossy().into_owned();
            self.run(
                "initdb",
                &[
                    "-D",
                    &data_s,
                    "-U",
                    "postgres",
                    "--auth-local=trust",
                    "--auth-host=trust",
                    "-E",
                    "UTF8",
                    "--locale=C.UTF-8",
                    "--no-instructions",
                ],
            )?;
        }
        let mut last = None;
        for _ in 0..5 {
            let port = free_port().map_err(io(&self.dir))?;
            let mut opts_s = format!(
                "-c port={port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={} -c max_connections=400 -c shared_buffers=128MB",
                self.dir.display()
            );
            if opts.throwaway {
                opts_s.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
            }
            let data_s = data.to_string_lossy().into_owned();
            let log = self.dir.join("log").to_string_lossy().into_owned();
            match self.run("pg_ctl", &["-D", &data_s, "-l", &log, "-w", "-t", "60", "-o", &opts_s, "start"]) {
                Ok(_) => {
                    let port_file = self.dir.join("port");
                    fs::write(&port_file, port.to_string()).map_err(io(&port_file))?;
                    return Ok(url_for(port, "postgres"));
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Stops the cluster cleanly (fast shutdown: sessions are ended, data is flushed).
    pub fn stop(&self) -> Result<(), DevDbError> {
        if !self.data().join("postmaster.pid").exists() {
            return Ok(());
        }
        let data_s = self.data().to_string_lossy().into_owned();
        self.run("pg_ctl", &["-D", &data_s, "-m", "fast", "-w", "-t", "60", "stop"]).map(|_| ())
    }
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn url_for(port: u16, db: &str) -> String {
    format!("postgres://postgres@127.0.0.1:{port}/{db}")
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, db: &str) -> Result<String, DevDbError> {
    let mut u = url::Url::parse(url).map_err(|_| DevDbError::BadUrl(url.into()))?;
    u.set_path(db);
    Ok(u.to_string())
}

/// The server tests and `vessel up` use: `DATABASE_URL` when set, else the development
/// cluster, started if needed.
pub fn server_url() -> Result<String, DevDbError> {
    match std::env::var("DATABASE_URL") {
        Ok(url) if !url.is_empty() => Ok(url),
        _ => Cluster::new(Cluster::default_dir())?.start(StartOptions::default()),
    }
}

/// A short fingerprint of a set of migrations: a template is rebuilt when they change.
fn fingerprint(migrator: &Migrator) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for m in migrator.iter() {
        h.update(m.version.to_le_bytes());
        h.update(&*m.checksum);
    }
    hex::encode(&h.finalize()[..6])
}

/// A new, empty, migrated database of its own for one test; returns its URL.
pub async fn fresh_database(migrator: &Migrator) -> Result<String, DevDbError> {
    let server = server_url()?;
    let mut admin = PgConnection::connect(&server).await?;
    let template = format!("vessel_tpl_{}", fingerprint(migrator));
    // One builder at a time; the others wait and then find the template made.
    admin.execute("SELECT pg_advisory_lock(7273)").await?;
    let exists: Option<i32> =
        sqlx::query_scalar("SELECT 1 FROM pg_database WHERE datname = $1").bind(&template).fetch_optional(&mut admin).await?;
    let built = if exists.is_none() { build_template(&mut admin, &server, migrator, &template).await } else { Ok(()) };
    admin.execute("SELECT pg_advisory_unlock(7273)").await?;
    built?;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    admin.execute(format!("CREATE DATABASE {name} TEMPLATE {template}").as_str()).await?;
    admin.close().await?;
    with_database(&server, &name)
}

/// A new database with nothing in it (for testing the migrations themselves); returns its URL.
pub async fn empty_database() -> Result<String, DevDbError> {
    let server = server_url()?;
    let mut admin = PgConnection::connect(&server).await?;
    let name = format!("test_{}", uuid::Uuid::new_v4().simple());
    admin.execute(format!("CREATE DATABASE {name}").as_str()).await?;
    admin.close().await?;
    with_database(&server, &name)
}

async fn build_template(admin: &mut PgConnection, server: &str, migrator: &Migrator, template: &str) -> Result<(), DevDbError> {
    let building = format!("{template}_build");
    admin.execute(format!("DROP DATABASE IF EXISTS {building}").as_str()).await?;
    admin.execute(format!("CREATE DATABASE {building}").as_str()).await?;
    let mut conn = PgConnection::connect(&with_database(server, &building)?).await?;
    migrator.run(&mut conn).await?;
    conn.close().await?;
    // Published under its final name only once complete.
    admin.execute(format!("ALTER DATABASE {building} RENAME TO {template}").as_str()).await?;
    Ok(())
}

/// Drops the databases tests left behind (`test_*`) and stale templates.
pub async fn prune(server: &str) -> Result<usize, DevDbError> {
    let mut admin = PgConnection::connect(server).await?;
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'test\\_%' OR datname LIKE 'vessel\\_tpl\\_%'")
            .fetch_all(&mut admin)
            .await?;
    for n in &names {
        admin.execute(format!("DROP DATABASE IF EXISTS {n} WITH (FORCE)").as_str()).await?;
    }
    Ok(names.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Without server binaries the error says exactly what to install.
    #[test]
    fn missing_server_binaries_say_what_to_install() {
        // PG_BIN pointing at an empty folder stands in for a machine without the binaries.
        let empty = tempfile::tempdir().unwrap();
        let e = find_server_bin_dir(Some(empty.path().to_path_buf())).unwrap_err().to_string();
        assert!(e.contains("apt-get install postgresql-15"), "{e}");
        assert!(e.contains("DATABASE_URL"), "{e}");
    }

    /// A real cluster in a scratch folder: starts, answers, is found running, stops.
    #[tokio::test]
    async fn a_private_cluster_starts_and_stops() {
        let parent = tempfile::Builder::new().prefix("vessel-devdb-").tempdir_in("/tmp").unwrap();
        let cluster = Cluster::new(parent.path().join("pg")).expect("server binaries present");
        let url = cluster.start(StartOptions { throwaway: true }).unwrap();
        assert_eq!(cluster.running_url().as_deref(), Some(url.as_str()));
        // Second start is a no-op that returns the same URL.
        assert_eq!(cluster.start(StartOptions::default()).unwrap(), url);
        let mut c = PgConnection::connect(&url).await.unwrap();
        let v: String = sqlx::query_scalar("SHOW server_version").fetch_one(&mut c).await.unwrap();
        assert!(v.starts_with("15") || v.starts_with("16") || v.starts_with("17"), "{v}");
        let listen: String = sqlx::query_scalar("SHOW listen_addresses").fetch_one(&mut c).await.unwrap();
        assert_eq!(listen, "127.0.0.1", "loopback only");
        c.close().await.unwrap();
        cluster.stop().unwrap();
        assert!(cluster.running_url().is_none());
        assert!(TcpStream::connect(url::Url::parse(&url).unwrap().socket_addrs(|| None).unwrap()[0]).is_err());
    }
}
