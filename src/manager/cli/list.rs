//! `list`: one line per VM.

use std::path::PathBuf;
use std::process::ExitCode;

use serde::Serialize;

use crate::manager::library::Library;
use crate::manager::run::{self, RuntimeState};
use crate::manager::size::format_size;
use crate::vmm::layout::MIB;

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Serialize)]
struct Row {
    name: String,
    dir: PathBuf,
    #[serde(rename = "type")]
    os_type: Option<&'static str>,
    cpus: Option<u8>,
    memory_mib: Option<u64>,
    memory: Option<String>,
    #[serde(flatten)]
    state: RuntimeState,
    /// Set when config.ini is invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

pub fn run(library: &Library, args: &ListArgs) -> anyhow::Result<ExitCode> {
    let rows: Vec<Row> = library
        .list()?
        .into_iter()
        .map(|vm| {
            let state = run::runtime_state(&vm.dir);
            match vm.config {
                Ok(config) => {
                    let s = config.settings;
                    Row {
                        name: vm.name,
                        dir: vm.dir,
                        os_type: Some(s.os_type.as_str()),
                        cpus: Some(s.cpus),
                        memory_mib: Some(s.memory_mib),
                        memory: Some(format_size(s.memory_mib * MIB)),
                        state,
                        error: None,
                    }
                }
                Err(err) => Row {
                    name: vm.name,
                    dir: vm.dir,
                    os_type: None,
                    cpus: None,
                    memory_mib: None,
                    memory: None,
                    state,
                    error: Some(format!("{:#}", anyhow::Error::new(err))),
                },
            }
        })
        .collect();
    if args.json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(ExitCode::SUCCESS);
    }
    if rows.is_empty() {
        println!("No VMs in {}.", library.root.display());
        return Ok(ExitCode::SUCCESS);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(0).max(4);
    println!(
        "{:<width$}  {:<5}  {:>4}  {:>6}  {:<8}  FOLDER",
        "NAME", "TYPE", "CPUS", "MEMORY", "STATE"
    );
    for row in &rows {
        let dash = || "-".to_string();
        let state = if row.error.is_some() {
            "invalid".to_string()
        } else {
            state_word(&row.state).to_string()
        };
        println!(
            "{:<width$}  {:<5}  {:>4}  {:>6}  {:<8}  {}",
            row.name,
            row.os_type.unwrap_or("-"),
            row.cpus.map_or_else(dash, |c| c.to_string()),
            row.memory.clone().unwrap_or_else(dash),
            state,
            row.dir.display()
        );
    }
    for row in rows.iter().filter(|r| r.error.is_some()) {
        eprintln!(
            "{}: warning: VM '{}': {}",
            super::PROGRAM,
            row.name,
            row.error.as_deref().unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// One word for a state.
pub fn state_word(state: &RuntimeState) -> &'static str {
    match state {
        RuntimeState::Stopped => "stopped",
        RuntimeState::Running { .. } => "running",
        RuntimeState::Paused { .. } => "paused",
        RuntimeState::Crashed { .. } => "crashed",
    }
}
