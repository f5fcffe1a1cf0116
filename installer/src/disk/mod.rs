//! Disks: what is there (inventory), and later which one to use and how to lay it out.

pub mod identity;
mod inventory;
pub mod layout;
pub mod partition;
pub mod select;
mod settle;
pub mod signature;

pub use identity::{Confirmed, Identity};
pub use inventory::{inventory, Disk, Partition};
pub use select::{matches, select, Allow};
pub use settle::{settle, settle_with};
pub use signature::Signature;

use crate::units::human_size;

/// One human-readable paragraph about a disk: identity, size, flags, what is on it.
pub fn describe(d: &Disk) -> String {
    let mut s = format!("{} {}", d.path.display(), human_size(d.size));
    if d.logical_sector != 512 || d.physical_sector != 512 {
        s += &format!(" sectors {}/{}", d.logical_sector, d.physical_sector);
    }
    for (label, value) in [("model", &d.model), ("serial", &d.serial), ("wwn", &d.wwn)] {
        if let Some(v) = value {
            s += &format!(" {label}={v:?}");
        }
    }
    for (flag, on) in [("removable", d.removable), ("read-only", d.read_only)] {
        if on {
            s += &format!(" {flag}");
        }
    }
    if let Some(t) = &d.table {
        s += &format!(" table={t}");
    }
    if let Some(t) = &d.table_id {
        s += &format!(" table-id={t}");
    }
    let names = |v: &[Signature]| v.iter().map(|x| x.name()).collect::<Vec<_>>().join(",");
    let tables = [Signature::Mbr, Signature::GptPrimary, Signature::GptBackup];
    let whole: Vec<Signature> = d.signatures.iter().copied().filter(|x| !tables.contains(x)).collect();
    if !whole.is_empty() {
        s += &format!(" contains={}", names(&whole));
    }
    if !d.mounted.is_empty() {
        s += &format!(" mounted={}", d.mounted.join(","));
    }
    for id in &d.by_id {
        s += &format!("\n    by-id {id}");
    }
    for p in &d.partitions {
        s += &format!("\n  {} #{} at {} size {}", p.path.display(), p.number, human_size(p.start), human_size(p.size));
        if !p.signatures.is_empty() {
            s += &format!(" contains={}", names(&p.signatures));
        }
        if !p.mounted.is_empty() {
            s += &format!(" mounted={}", p.mounted.join(","));
        }
    }
    s
}
