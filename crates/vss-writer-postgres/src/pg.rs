//! The database side: one dedicated thread per instance (an actor) that owns the connections
//! and runs commands it receives over a channel.
//!
//! Why an actor: the SDK runs the hooks on tokio blocking threads, inside the runtime's
//! context, and the synchronous `postgres` client drives its own tokio runtime, which must not
//! be started there. A plain `std::thread` has no runtime context, owns its connections for as
//! long as they are needed (a backup must be started and stopped on the *same* session), and
//! lets a hook wait for an answer with a deadline.

use std::sync::mpsc;
use std::time::Duration;

use postgres::{Client, NoTls, SimpleQueryMessage};

/// Rows of a simple query: every column as text (NULL is `None`).
pub type Rows = Vec<Vec<Option<String>>>;

/// How long a connection attempt may take when the connection string does not say.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

enum Command {
    /// Runs SQL on the general connection (reconnecting as needed).
    Query(String, mpsc::Sender<Result<Rows, String>>),
    /// Opens the backup connection and runs SQL on it (the start of a backup).
    BackupBegin(String, mpsc::Sender<Result<Rows, String>>),
    /// Runs SQL on the backup connection, then closes it (the end of a backup).
    BackupEnd(String, mpsc::Sender<Result<Rows, String>>),
    /// Runs SQL on the backup connection if there is one, then closes it (an abort).
    BackupCancel(String),
    /// Closes the general connection (a restore is about to replace the cluster's files); the
    /// next query reconnects.
    Disconnect(mpsc::Sender<()>),
}

/// A handle to one instance's database thread.
#[derive(Debug, Clone)]
pub struct Db {
    tx: mpsc::Sender<Command>,
}

impl Db {
    /// Starts the thread for the connection string `conn` (validated here).
    pub fn start(name: &str, conn: &str) -> Result<Db, String> {
        let mut config: postgres::Config = conn
            .parse()
            .map_err(|e| format!("bad connection string '{conn}': {e}"))?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_application_name().is_none() {
            config.application_name("vss-writer-postgres");
        }
        let (tx, rx) = mpsc::channel::<Command>();
        std::thread::Builder::new()
            .name(format!("pg-{name}"))
            .spawn(move || actor(config, rx))
            .map_err(|e| format!("cannot start the database thread: {e}"))?;
        Ok(Db { tx })
    }

    /// Runs `sql` (one or more statements, simple query protocol) and returns the rows of its
    /// results, waiting at most `timeout`.
    pub fn query(&self, sql: &str, timeout: Duration) -> Result<Rows, String> {
        self.call(Command::Query, sql, timeout)
    }

    /// Opens a connection of its own for a backup and runs `sql` on it; the connection stays
    /// open for [`Db::backup_end`] (the backup API needs one session from start to stop). A
    /// backup connection left from before is closed first.
    pub fn backup_begin(&self, sql: &str, timeout: Duration) -> Result<Rows, String> {
        self.call(Command::BackupBegin, sql, timeout)
    }

    /// Runs `sql` on the backup connection, then closes it.
    pub fn backup_end(&self, sql: &str, timeout: Duration) -> Result<Rows, String> {
        self.call(Command::BackupEnd, sql, timeout)
    }

    /// Runs `sql` on the backup connection, if one is open, then closes it; does not wait.
    pub fn backup_cancel(&self, sql: &str) {
        let _ = self.tx.send(Command::BackupCancel(sql.to_owned()));
    }

    /// Closes the general connection, waiting at most `timeout`; a backup in progress keeps its
    /// own.
    pub fn disconnect(&self, timeout: Duration) {
        let (reply, rx) = mpsc::channel();
        if self.tx.send(Command::Disconnect(reply)).is_ok() {
            let _ = rx.recv_timeout(timeout);
        }
    }

    fn call(
        &self,
        make: fn(String, mpsc::Sender<Result<Rows, String>>) -> Command,
        sql: &str,
        timeout: Duration,
    ) -> Result<Rows, String> {
        let (reply, rx) = mpsc::channel();
        self.tx
            .send(make(sql.to_owned(), reply))
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

    /// The first column of the first row of `sql`.
    pub fn scalar(&self, sql: &str, timeout: Duration) -> Result<Option<String>, String> {
        Ok(self
            .query(sql, timeout)?
            .into_iter()
            .next()
            .and_then(|row| row.into_iter().next())
            .flatten())
    }
}

fn actor(config: postgres::Config, rx: mpsc::Receiver<Command>) {
    let mut general: Option<Client> = None;
    let mut backup: Option<Client> = None;
    while let Ok(cmd) = rx.recv() {
        match cmd {
            Command::Query(sql, reply) => {
                let r = run(&config, &mut general, &sql);
                if r.is_err() {
                    // The next command reconnects.
                    general = None;
                }
                let _ = reply.send(r);
            }
            Command::BackupBegin(sql, reply) => {
                // Closing a connection left open ends its backup on the server.
                backup = None;
                let r = connect(&config).and_then(|mut c| {
                    let rows = simple(&mut c, &sql)?;
                    backup = Some(c);
                    Ok(rows)
                });
                let _ = reply.send(r);
            }
            Command::BackupEnd(sql, reply) => {
                let r = match backup.take() {
                    Some(mut c) => simple(&mut c, &sql),
                    None => Err("no backup is in progress on this writer's connection".to_owned()),
                };
                let _ = reply.send(r);
            }
            Command::BackupCancel(sql) => {
                if let Some(mut c) = backup.take() {
                    let _ = simple(&mut c, &sql);
                }
            }
            Command::Disconnect(reply) => {
                general = None;
                let _ = reply.send(());
            }
        }
    }
}

fn connect(config: &postgres::Config) -> Result<Client, String> {
    config
        .connect(NoTls)
        .map_err(|e| format!("cannot connect to PostgreSQL: {e}"))
}

fn run(config: &postgres::Config, slot: &mut Option<Client>, sql: &str) -> Result<Rows, String> {
    if slot.as_ref().is_none_or(Client::is_closed) {
        *slot = Some(connect(config)?);
    }
    let client = slot.as_mut().expect("connected above");
    simple(client, sql)
}

fn simple(client: &mut Client, sql: &str) -> Result<Rows, String> {
    let msgs = client
        .simple_query(sql)
        .map_err(|e| format!("{sql}: {}", describe(&e)))?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}

/// The server's message for a database error, the error itself otherwise.
fn describe(e: &postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{}: {}", db.severity(), db.message()),
        None => e.to_string(),
    }
}
