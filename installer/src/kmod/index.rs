//! The index files `depmod` writes into `/lib/modules/RELEASE`, parsed into one structure
//! that answers "which file is this module", "what must load first" and "which modules
//! serve this device's modalias", and that can write the same files back for a subset.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

use super::{glob, name_of_path, normalize};

/// One loadable module: its file relative to the tree and its hard dependencies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleEntry {
    /// Path relative to the module tree, as written in `modules.dep`.
    pub path: String,
    /// Names of the modules that must be loaded before this one (depmod lists the whole
    /// transitive set; the order does not matter to us because we resolve recursively).
    pub deps: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct SoftDep {
    pre: Vec<String>,
    post: Vec<String>,
}

/// A parsed module tree index.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    root: PathBuf,
    modules: BTreeMap<String, ModuleEntry>,
    aliases: Vec<(String, String)>,
    softdeps: BTreeMap<String, SoftDep>,
    builtin: BTreeSet<String>,
    builtin_text: String,
}

/// The index files of a subset, ready to be written next to the subset's modules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubsetFiles {
    pub dep: String,
    pub alias: String,
    pub softdep: String,
    pub builtin: String,
}

impl ModuleIndex {
    /// Reads the index of the module tree at `root` (e.g. `/lib/modules/6.1.0-56-amd64`).
    /// `modules.dep` is required; the alias, softdep and builtin files are optional.
    pub fn load(root: &Path) -> Result<Self> {
        let read = |name: &str, required: bool| -> Result<String> {
            let path = root.join(name);
            match std::fs::read_to_string(&path) {
                Ok(s) => Ok(s),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
                Err(e) => Err(e).with_context(|| format!("reading {}: run `depmod` for this kernel, or name another tree with --modules-dir", path.display())),
            }
        };
        let mut index = Self::parse(&read("modules.dep", true)?, &read("modules.alias", false)?, &read("modules.softdep", false)?, &read("modules.builtin", false)?)
            .with_context(|| format!("parsing the module index in {}", root.display()))?;
        index.root = root.to_path_buf();
        Ok(index)
    }

    /// Parses the text of the four index files.
    pub fn parse(dep: &str, alias: &str, softdep: &str, builtin: &str) -> Result<Self> {
        let mut index = ModuleIndex { builtin_text: builtin.to_string(), ..Default::default() };
        for (n, line) in dep.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((path, deps)) = line.split_once(':') else {
                bail!("modules.dep line {}: expected `path: deps`, found {line:?}", n + 1);
            };
            let name = name_of_path(path).with_context(|| format!("modules.dep line {}: {path:?} is not a module file", n + 1))?;
            let deps = deps.split_whitespace().map(|d| name_of_path(d).with_context(|| format!("modules.dep line {}: bad dependency {d:?}", n + 1))).collect::<Result<Vec<_>>>()?;
            index.modules.insert(name, ModuleEntry { path: path.to_string(), deps });
        }
        for line in alias.lines() {
            let mut words = line.split_whitespace();
            if let (Some("alias"), Some(pattern), Some(module)) = (words.next(), words.next(), words.next()) {
                index.aliases.push((pattern.to_string(), normalize(module)));
            }
        }
        for line in softdep.lines() {
            let mut words = line.split_whitespace();
            if words.next() != Some("softdep") {
                continue;
            }
            let Some(module) = words.next() else { continue };
            let entry = index.softdeps.entry(normalize(module)).or_default();
            let mut post = false;
            for w in words {
                match w {
                    "pre:" => post = false,
                    "post:" => post = true,
                    // Names or aliases; aliases must keep their spelling.
                    name if post => entry.post.push(name.to_string()),
                    name => entry.pre.push(name.to_string()),
                }
            }
        }
        index.builtin = builtin.lines().filter_map(name_of_path).collect();
        Ok(index)
    }

    /// The directory the index was read from (empty for parsed text).
    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn module(&self, name: &str) -> Option<&ModuleEntry> {
        self.modules.get(&normalize(name))
    }

    pub fn modules(&self) -> impl Iterator<Item = (&String, &ModuleEntry)> {
        self.modules.iter()
    }

    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// The loadable modules whose alias pattern matches `modalias`, sorted and deduplicated.
    pub fn match_modalias(&self, modalias: &str) -> Vec<String> {
        let found: BTreeSet<String> = self.aliases.iter().filter(|(pattern, module)| glob::matches(pattern, modalias) && self.modules.contains_key(module)).map(|(_, module)| module.clone()).collect();
        found.into_iter().collect()
    }

    /// Resolves a module name or alias (`crc32c`, `fs-vfat`) to loadable modules.
    /// Empty when it names nothing loadable (it may be built in).
    pub fn lookup(&self, name: &str) -> Vec<String> {
        let module = normalize(name);
        if self.modules.contains_key(&module) {
            return vec![module];
        }
        // Alias strings are matched as written: `fs-vfat` is not `fs_vfat`.
        self.match_modalias(name)
    }

    /// The modules to load, in order, so that `wanted` ends up loaded: every hard dependency
    /// and every available soft dependency comes before the module that needs it.
    /// A wanted name that is neither a module, an alias nor built in is an error.
    pub fn load_order(&self, wanted: &[String]) -> Result<Vec<String>> {
        let mut order = Vec::new();
        let mut seen = BTreeSet::new();
        for name in wanted {
            let found = self.lookup(name);
            if found.is_empty() {
                if self.is_builtin(name) {
                    continue;
                }
                bail!("kernel module {name:?} is not in {}/modules.dep, not an alias and not built in", self.root.display());
            }
            for module in found {
                self.visit(&module, &mut seen, &mut order, &mut vec![])?;
            }
        }
        Ok(order)
    }

    fn visit(&self, name: &str, seen: &mut BTreeSet<String>, order: &mut Vec<String>, chain: &mut Vec<String>) -> Result<()> {
        if !seen.insert(name.to_string()) {
            return Ok(());
        }
        let Some(entry) = self.modules.get(name) else {
            if self.is_builtin(name) {
                return Ok(());
            }
            bail!("kernel module {name:?} (needed by {}) is missing from modules.dep", chain.join(" → "));
        };
        chain.push(name.to_string());
        let soft = self.softdeps.get(name).cloned().unwrap_or_default();
        for pre in &soft.pre {
            for m in self.lookup(pre) {
                self.visit(&m, seen, order, chain)?;
            }
        }
        for dep in &entry.deps {
            self.visit(dep, seen, order, chain)?;
        }
        chain.pop();
        order.push(name.to_string());
        for post in &soft.post {
            for m in self.lookup(post) {
                self.visit(&m, seen, order, &mut vec![name.to_string()])?;
            }
        }
        Ok(())
    }

    /// The index files restricted to `modules` (names that are not in the index are ignored).
    pub fn subset(&self, modules: &BTreeSet<String>) -> SubsetFiles {
        let mut dep = String::new();
        for (name, entry) in &self.modules {
            if !modules.contains(name) {
                continue;
            }
            let paths: Vec<&str> = entry.deps.iter().filter_map(|d| self.modules.get(d).map(|e| e.path.as_str())).collect();
            let _ = writeln!(dep, "{}: {}", entry.path, paths.join(" "));
        }
        let mut alias = String::new();
        for (pattern, module) in &self.aliases {
            if modules.contains(module) {
                let _ = writeln!(alias, "alias {pattern} {module}");
            }
        }
        let mut softdep = String::new();
        for (name, soft) in &self.softdeps {
            if !modules.contains(name) {
                continue;
            }
            let _ = write!(softdep, "softdep {name}");
            if !soft.pre.is_empty() {
                let _ = write!(softdep, " pre: {}", soft.pre.join(" "));
            }
            if !soft.post.is_empty() {
                let _ = write!(softdep, " post: {}", soft.post.join(" "));
            }
            softdep.push('\n');
        }
        SubsetFiles { dep, alias, softdep, builtin: self.builtin_text.clone() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> ModuleIndex {
        ModuleIndex::parse(
            "kernel/fs/ext4/ext4.ko: kernel/fs/jbd2/jbd2.ko kernel/fs/mbcache.ko kernel/lib/crc16.ko\n\
             kernel/fs/jbd2/jbd2.ko:\n\
             kernel/fs/mbcache.ko:\n\
             kernel/lib/crc16.ko:\n\
             kernel/crypto/crc32c_generic.ko.xz:\n\
             kernel/drivers/block/virtio_blk.ko.zst: kernel/drivers/virtio/virtio_ring.ko\n\
             kernel/drivers/virtio/virtio_ring.ko:\n",
            "alias crc32c crc32c_generic\nalias virtio:d00000002v* virtio_blk\n",
            "softdep ext4 pre: crc32c\n",
            "kernel/drivers/virtio/virtio.ko\n",
        )
        .unwrap()
    }

    #[test]
    fn order_puts_dependencies_and_softdeps_first() {
        let order = sample().load_order(&["ext4".into()]).unwrap();
        assert_eq!(order, ["crc32c_generic", "jbd2", "mbcache", "crc16", "ext4"]);
    }

    #[test]
    fn builtin_names_need_nothing() {
        assert!(sample().load_order(&["virtio".into()]).unwrap().is_empty());
    }

    #[test]
    fn missing_module_is_named() {
        let err = sample().load_order(&["nosuch".into()]).unwrap_err().to_string();
        assert!(err.contains("\"nosuch\""), "{err}");
    }

    #[test]
    fn subset_keeps_only_selected() {
        let idx = sample();
        let set: BTreeSet<String> = ["virtio_blk", "virtio_ring"].iter().map(|s| s.to_string()).collect();
        let files = idx.subset(&set);
        assert_eq!(files.dep, "kernel/drivers/block/virtio_blk.ko.zst: kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio_ring.ko: \n");
        assert_eq!(files.alias, "alias virtio:d00000002v* virtio_blk\n");
        assert_eq!(files.softdep, "");
        let reparsed = ModuleIndex::parse(&files.dep, &files.alias, &files.softdep, &files.builtin).unwrap();
        assert_eq!(reparsed.match_modalias("virtio:d00000002v00001AF4"), ["virtio_blk"]);
    }
}
