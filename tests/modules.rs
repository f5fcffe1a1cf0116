//! Module resolution on a tree generated from the real Debian kernel by
//! `fixtures/module-tree.sh` and indexed by the real depmod.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

use anemos_tests::{scratch, sh, test_kernel, workspace};
use installer::kmod::{select, ModuleIndex};

/// The fixture tree, generated once for all tests of this file.
fn tree() -> PathBuf {
    static TREE: OnceLock<PathBuf> = OnceLock::new();
    TREE.get_or_init(|| {
        let kernel = test_kernel();
        let out = scratch("module-tree");
        let script = workspace().join("tests/fixtures/module-tree.sh");
        let dir = sh(&format!("{} {} {}", script.display(), kernel.modules_dir.display(), out.display())).unwrap();
        PathBuf::from(dir.trim())
    })
    .clone()
}

fn position(order: &[String], name: &str) -> usize {
    order.iter().position(|m| m == name).unwrap_or_else(|| panic!("{name} missing from {order:?}"))
}

#[test]
fn dependencies_and_softdeps_load_first() {
    let index = ModuleIndex::load(&tree()).unwrap();
    let order = index.load_order(&["ext4".into(), "virtio_net".into()]).unwrap();
    for dep in ["jbd2", "mbcache", "crc16", "crc32c_generic"] {
        assert!(position(&order, dep) < position(&order, "ext4"), "{dep} after ext4 in {order:?}");
    }
    for dep in ["virtio", "virtio_ring", "failover", "net_failover"] {
        assert!(position(&order, dep) < position(&order, "virtio_net"), "{dep} after virtio_net in {order:?}");
    }
    assert!(position(&order, "virtio_ring") < position(&order, "virtio"));
    assert_eq!(order.iter().collect::<BTreeSet<_>>().len(), order.len(), "duplicates in {order:?}");
}

#[test]
fn wildcard_aliases_match_device_modaliases() {
    let index = ModuleIndex::load(&tree()).unwrap();
    // What QEMU's virtio block and network devices and the PCI transport report in sysfs.
    assert_eq!(index.match_modalias("virtio:d00000002v00001AF4"), ["virtio_blk"]);
    assert_eq!(index.match_modalias("virtio:d00000001v00001AF4"), ["virtio_net"]);
    assert_eq!(index.match_modalias("pci:v00001AF4d00001042sv00001AF4sd00001100bc01sc00i00"), ["virtio_pci"]);
    assert!(index.match_modalias("pci:v00008086d0000100Esv00001AF4sd00001100bc02sc00i00").is_empty());
    assert_eq!(index.lookup("fs-vfat"), ["vfat"]);
}

#[test]
fn a_missing_module_is_a_clear_error() {
    let index = ModuleIndex::load(&tree()).unwrap();
    let err = index.load_order(&["e1000e".into()]).unwrap_err().to_string();
    assert!(err.contains("\"e1000e\"") && err.contains("modules.dep"), "{err}");
    let err = select(&index, false, &["nosuchdriver".into()], &[]).unwrap_err();
    assert!(format!("{err:#}").contains("--module nosuchdriver"), "{err:#}");
}

#[test]
fn defaults_skip_what_the_tree_lacks_and_close_over_dependencies() {
    let index = ModuleIndex::load(&tree()).unwrap();
    let sel = select(&index, true, &[], &[]).unwrap();
    for m in ["virtio_blk", "virtio", "virtio_ring", "ext4", "jbd2", "crc32c_generic", "vfat", "fat"] {
        assert!(sel.modules.contains(m), "{m} not selected: {:?}", sel.modules);
    }
    assert!(sel.absent_defaults.contains(&"e1000e".to_string()));
}

#[test]
fn subset_index_files_reparse_to_the_same_answers() {
    let index = ModuleIndex::load(&tree()).unwrap();
    let wanted: BTreeSet<String> = index.load_order(&["virtio_blk".into()]).unwrap().into_iter().collect();
    let files = index.subset(&wanted);
    let sub = ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin).unwrap();
    assert_eq!(sub.load_order(&["virtio_blk".into()]).unwrap(), index.load_order(&["virtio_blk".into()]).unwrap());
    assert_eq!(sub.match_modalias("virtio:d00000002v00001AF4"), ["virtio_blk"]);
    assert!(sub.module("ext4").is_none());
}
