//! `vss-backup-demo`: the whole VSS backup sequence through vssd, the way VShadow does it, as
//! a small example of the requester library. It snapshots the given volumes with every writer
//! taking part, shows where the snapshots are readable, reports every component as backed up,
//! and prints the writers' statuses.

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::Parser;
use vss_client::{AsyncStatus, BackupComponents, BackupType};

/// Back up volumes through vssd (component mode, full backup) and print the writers' statuses.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// vssd's requester socket.
    #[arg(long, env = "VSS_SOCKET", default_value = "/run/vss/vssd.sock")]
    socket: PathBuf,
    /// Volumes to snapshot: mount points or btrfs subvolume roots.
    #[arg(required = true)]
    volumes: Vec<String>,
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut bc = BackupComponents::connect(&args.socket)
        .await
        .with_context(|| format!("connecting to vssd at {}", args.socket.display()))?;
    bc.initialize_for_backup(None).await?;
    bc.set_backup_state(true, false, BackupType::Full, false)
        .await?;
    bc.gather_writer_metadata().await?.await?;
    let writers = bc.get_writer_metadata().await?;
    println!("{} writer(s) answered Identify", writers.len());
    // Like VShadow: every selectable component without a selectable ancestor, and every
    // top-level non-selectable one.
    for w in &writers {
        for c in &w.components {
            let top = c.logical_path.is_empty();
            let has_selectable_ancestor = w.components.iter().any(|a| {
                a.selectable && {
                    let ap = if a.logical_path.is_empty() {
                        a.name.clone()
                    } else {
                        format!("{}\\{}", a.logical_path, a.name)
                    };
                    c.logical_path == ap || c.logical_path.starts_with(&format!("{ap}\\"))
                }
            });
            if (c.selectable && !has_selectable_ancestor) || (!c.selectable && top) {
                bc.add_component(
                    w.instance_id,
                    w.writer_id,
                    c.component_type,
                    &c.logical_path,
                    &c.name,
                )
                .await?;
                println!(
                    "  including {}:{}{}",
                    w.writer_name,
                    if top { "" } else { &c.logical_path },
                    c.name
                );
            }
        }
    }
    let set = bc.start_snapshot_set().await?;
    let mut snaps = Vec::new();
    for v in &args.volumes {
        snaps.push((v.clone(), bc.add_to_snapshot_set(v, None).await?));
    }
    bc.prepare_for_backup().await?.await?;
    let op = bc.do_snapshot_set().await?;
    match op.wait(None).await? {
        AsyncStatus::Finished => {}
        other => {
            print_status(&mut bc).await?;
            bail!("DoSnapshotSet failed: {other:?}");
        }
    }
    println!("* SNAPSHOT SET ID = {set}");
    for (v, id) in &snaps {
        let p = bc.get_snapshot_properties(*id).await?;
        println!("  * SNAPSHOT ID = {id}");
        println!("    - Original volume: {v}");
        println!("    - Readable at: {}", p.snapshot_path);
        println!(
            "    - Files in the snapshot: {}",
            count_files(std::path::Path::new(&p.snapshot_path))
        );
        println!(
            "    - Attributes: {}",
            if p.attribute_names.is_empty() {
                "Auto release".into()
            } else {
                p.attribute_names.join(", ")
            }
        );
    }
    // The "backup program" would copy from the snapshot paths here.
    for w in &writers {
        for c in &w.components {
            let _ = bc
                .set_backup_succeeded(
                    w.instance_id,
                    w.writer_id,
                    c.component_type,
                    &c.logical_path,
                    &c.name,
                    true,
                )
                .await;
        }
    }
    bc.backup_complete().await?.await?;
    print_status(&mut bc).await?;
    Ok(())
}

/// What a backup program would copy: the regular files below `dir`.
fn count_files(dir: &std::path::Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            Ok(t) if t.is_file() => 1,
            _ => 0,
        })
        .sum()
}

async fn print_status(bc: &mut BackupComponents) -> anyhow::Result<()> {
    bc.gather_writer_status().await?.await?;
    for s in bc.get_writer_status().await? {
        println!("* WRITER \"{}\"", s.writer_name);
        println!("  - Status: {} ({})", s.state, s.state_name);
        println!(
            "  - Writer Failure code: 0x{:08x} ({})",
            s.failure, s.failure_name
        );
        println!("  - Writer ID: {{{}}}", s.writer_id);
        println!("  - Instance ID: {{{}}}", s.instance_id);
    }
    Ok(())
}
