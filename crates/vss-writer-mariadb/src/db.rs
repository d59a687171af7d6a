//! The database side: one dedicated thread per instance (an actor) that owns the connections
//! and runs commands it receives over a channel.
//!
//! Why an actor: the SDK runs the hooks on tokio blocking threads, and the backup locks
//! (BACKUP STAGE, FLUSH TABLES WITH READ LOCK) belong to the *session* that took them, so one
//! connection must live from PrepareForSnapshot to Thaw or Abort, whichever hook thread asks.
//! A plain `std::thread` owns that connection and lets a hook wait for an answer with a
//! deadline. Closing the held connection releases whatever it holds on the server.

use std::path::PathBuf;
use std::sync::mpsc;
use std::time::Duration;

use mysql::prelude::Queryable;
use mysql::{Conn, Opts, OptsBuilder, Value};

/// Rows of a query: every column as text (NULL is `None`).
pub type Rows = Vec<Vec<Option<String>>>;

/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the server is.
#[derive(Debug, Clone)]
pub enum Target {
    /// A Unix socket and the user to connect as.
    Socket { path: PathBuf, user: String },
    /// A `mysql://` URL.
    Url(String),
}

enum Command {
    /// Runs SQL on the general connection (reconnecting as needed).
    Query(String, mpsc::Sender<Result<Rows, String>>),
    /// Opens the held connection (closing one left from before) and runs the statements on it.
    Hold(Vec<String>, mpsc::Sender<Result<Rows, String>>),
    /// Runs SQL on the held connection.
    OnHeld(String, mpsc::Sender<Result<Rows, String>>),
    /// Runs the statements on the held connection, if there is one, then closes it; replies
    /// with the first error.
    Release(Vec<String>, Option<mpsc::Sender<Result<Rows, String>>>),
}

/// A handle to one instance's database thread.
#[derive(Debug, Clone)]
pub struct Db {
    tx: mpsc::Sender<Command>,
}

impl Db {
    /// Starts the thread for `target` (validated here).
    pub fn start(name: &str, target: Target) -> Result<Db, String> {
        let opts = match target {
            Target::Socket { path, user } => OptsBuilder::new()
                .socket(Some(path.display().to_string()))
                .user(Some(user)),
            Target::Url(url) => OptsBuilder::from_opts(
                Opts::from_url(&url).map_err(|e| format!("bad connection URL: {e}"))?,
            ),
        }
        .tcp_connect_timeout(Some(CONNECT_TIMEOUT))
        .prefer_socket(true);
        let opts: Opts = opts.into();
        let (tx, rx) = mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name(format!("mariadb-{name}"))
            .spawn(move || actor(opts, rx))
            .map_err(|e| format!("cannot start the database thread: {e}"))?;
        Ok(Db { tx })
    }

    /// Runs `sql` on the general connection and returns its rows, waiting at most `timeout`.
    pub fn query(&self, sql: &str, timeout: Duration) -> Result<Rows, String> {
        self.call_with(|r| Command::Query(sql.to_owned(), r), timeout)
    }

    /// The first column of the first row of `sql`.
    pub fn scalar(&self, sql: &str, timeout: Duration) -> Result<Option<String>, String> {
        Ok(self
            .query(sql, timeout)?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .flatten())
    }

    /// Opens the held connection and runs `statements` on it (a connection held from before is
    /// closed first, which releases its locks). On an error the connection is closed.
    pub fn hold(&self, statements: &[&str], timeout: Duration) -> Result<Rows, String> {
        let stmts = statements.iter().map(|s| (*s).to_owned()).collect();
        self.call_with(|r| Command::Hold(stmts, r), timeout)
    }

    /// Runs `sql` on the held connection.
    pub fn on_held(&self, sql: &str, timeout: Duration) -> Result<Rows, String> {
        self.call_with(|r| Command::OnHeld(sql.to_owned(), r), timeout)
    }

    /// Runs `statements` on the held connection, then closes it.
    pub fn release(&self, statements: &[&str], timeout: Duration) -> Result<(), String> {
        let stmts = statements.iter().map(|s| (*s).to_owned()).collect();
        self.call_with(|r| Command::Release(stmts, Some(r)), timeout)
            .map(|_| ())
    }

    /// [`Db::release`] without waiting.
    pub fn release_nowait(&self, statements: &[&str]) {
        let stmts = statements.iter().map(|s| (*s).to_owned()).collect();
        let _ = self.tx.send(Command::Release(stmts, None));
    }

    fn call_with(
        &self,
        make: impl FnOnce(mpsc::Sender<Result<Rows, String>>) -> Command,
        timeout: Duration,
    ) -> Result<Rows, String> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(make(reply))
            .map_err(|_| "the database thread is gone".to_owned())?;
        match rx.recv_timeout(timeout) {
            Ok(r) => r,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                Err(format!("no answer from the server within {timeout:?}"))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                Err("the database thread is gone".to_owned())
            }
        }
    }
}

fn actor(opts: Opts, rx: mpsc::Receiver<Command>) {
    let mut general: Option<Conn> = None;
    let mut held: Option<Conn> = None;
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Command::Query(sql, reply) => {
                let r = connected(&opts, &mut general).and_then(|c| run(c, &sql));
                if r.is_err() {
                    // The next command reconnects.
                    general = None;
                }
                let _ = reply.send(r);
            }
            Command::Hold(stmts, reply) => {
                held = None;
                let r = connect(&opts).and_then(|mut c| {
                    let mut rows = Vec::new();
                    for s in &stmts {
                        rows = run(&mut c, s)?;
                    }
                    held = Some(c);
                    Ok(rows)
                });
                let _ = reply.send(r);
            }
            Command::OnHeld(sql, reply) => {
                let r = match held.as_mut() {
                    Some(c) => run(c, &sql),
                    None => Err("the writer holds no connection to the server (was PrepareForSnapshot answered?)".to_owned()),
                };
                if r.is_err() {
                    // Closing the session releases anything it took.
                    held = None;
                }
                let _ = reply.send(r);
            }
            Command::Release(stmts, reply) => {
                let mut r = Ok(Vec::new());
                if let Some(mut c) = held.take() {
                    for s in &stmts {
                        if let Err(e) = run(&mut c, s) {
                            r = Err(e);
                            break;
                        }
                    }
                }
                if let Some(reply) = reply {
                    let _ = reply.send(r);
                }
            }
        }
    }
}

fn connect(opts: &Opts) -> Result<Conn, String> {
    Conn::new(opts.clone()).map_err(|e| format!("cannot connect to the server: {e}"))
}

fn connected<'a>(opts: &Opts, slot: &'a mut Option<Conn>) -> Result<&'a mut Conn, String> {
    if slot.is_none() {
        *slot = Some(connect(opts)?);
    }
    Ok(slot.as_mut().expect("connected above"))
}

fn run(conn: &mut Conn, sql: &str) -> Result<Rows, String> {
    let rows: Vec<mysql::Row> = conn.query(sql).map_err(|e| format!("{sql}: {e}"))?;
    Ok(rows
        .into_iter()
        .map(|row| row.unwrap().into_iter().map(text).collect())
        .collect())
}

fn text(v: Value) -> Option<String> {
    match v {
        Value::NULL => None,
        Value::Bytes(b) => Some(String::from_utf8_lossy(&b).into_owned()),
        other => Some(other.as_sql(true).trim_matches('\'').to_owned()),
    }
}
