//! Choosing the package set for a world the way apk's solver settles a fresh install: each
//! dependency is met by a package already chosen, else by the highest version of the package
//! of that name, else by a provider (highest `provider_priority`, then the only provider
//! name; several unranked providers are an error, as apk asks to pick one); tagged
//! repositories serve only `name@tag` requests; conflicts (`!name`) are checked at the end;
//! install-if packages join when all their conditions are met.

use std::collections::{BTreeMap, BTreeSet};

use anyhow::{bail, Result};

use super::index::{Dep, Package};
use super::version::compare;

#[derive(Debug)]
pub struct Resolution {
    /// Indexes into the universe, dependencies first.
    pub order: Vec<usize>,
    pub reasons: BTreeMap<String, String>,
}

/// `world` entries may carry `@tag`; `tags[i]` is repository `i`'s tag.
pub fn resolve(pkgs: &[Package], tags: &[Option<String>], world: &[String]) -> Result<Resolution> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut reasons = BTreeMap::new();
    let mut queue: Vec<(usize, String)> = Vec::new();
    for w in world {
        let (dep, tag) = match w.split_once('@') {
            Some((d, t)) => (d, Some(t.to_string())),
            None => (w.as_str(), None),
        };
        let dep = Dep::parse(dep)?;
        let i = pick(pkgs, tags, &dep, tag.as_deref(), &chosen).map_err(|e| e.context(format!("world: {w}")))?;
        if !chosen.contains(&i) {
            chosen.push(i);
            reasons.insert(pkgs[i].name.clone(), format!("(world: {w})"));
            queue.push((i, format!("(world: {w})")));
        }
    }
    loop {
        while let Some((i, why)) = queue.pop() {
            for dep in pkgs[i].depends.iter().filter(|d| !d.conflict) {
                if chosen.iter().any(|&c| pkgs[c].satisfies(dep)) {
                    continue;
                }
                let why = format!("{why} → {}", pkgs[i].name);
                let j = pick(pkgs, tags, dep, None, &chosen).map_err(|e| e.context(why.clone()))?;
                chosen.push(j);
                reasons.insert(pkgs[j].name.clone(), why.clone());
                queue.push((j, why));
            }
        }
        // install-if: a package whose every condition is met by the set joins it.
        let names: BTreeSet<&str> = chosen.iter().map(|&c| pkgs[c].name.as_str()).collect();
        let extra = (0..pkgs.len()).find(|&k| {
            let p = &pkgs[k];
            !p.install_if.is_empty()
                && !names.contains(p.name.as_str())
                && tags[p.repo].is_none()
                && best_named(pkgs, tags, &p.name, None) == Some(k)
                && p.install_if.iter().all(|c| chosen.iter().any(|&x| pkgs[x].satisfies(c)))
        });
        let Some(k) = extra else { break };
        chosen.push(k);
        reasons.insert(pkgs[k].name.clone(), "(install_if)".into());
        queue.push((k, "(install_if)".into()));
    }
    for &i in &chosen {
        for c in pkgs[i].depends.iter().filter(|d| d.conflict) {
            let plain = Dep { conflict: false, ..c.clone() };
            if let Some(&j) = chosen.iter().find(|&&j| j != i && pkgs[j].satisfies(&plain)) {
                bail!("{} conflicts with {} ({c})", pkgs[i].name, pkgs[j].name);
            }
        }
    }
    Ok(Resolution { order: order(pkgs, &chosen), reasons })
}

/// The highest version of `name` (from untagged repositories, or the given tag's).
fn best_named(pkgs: &[Package], tags: &[Option<String>], name: &str, tag: Option<&str>) -> Option<usize> {
    (0..pkgs.len()).filter(|&i| pkgs[i].name == name && tags[pkgs[i].repo].as_deref() == tag).max_by(|&a, &b| compare(&pkgs[a].version, &pkgs[b].version).then(b.cmp(&a)))
}

fn pick(pkgs: &[Package], tags: &[Option<String>], dep: &Dep, tag: Option<&str>, chosen: &[usize]) -> Result<usize> {
    let ok = |i: &usize| tags[pkgs[*i].repo].as_deref() == tag && pkgs[*i].satisfies(dep);
    let named = (0..pkgs.len()).filter(|i| pkgs[*i].name == dep.name).filter(ok).max_by(|&a, &b| compare(&pkgs[a].version, &pkgs[b].version).then(b.cmp(&a)));
    if let Some(i) = named {
        return Ok(i);
    }
    let providers: Vec<usize> = (0..pkgs.len()).filter(ok).collect();
    if let Some(&i) = providers.iter().find(|i| chosen.contains(i)) {
        return Ok(i);
    }
    let names: BTreeSet<&str> = providers.iter().map(|&i| pkgs[i].name.as_str()).collect();
    let best = |cands: &mut dyn Iterator<Item = usize>| cands.max_by(|&a, &b| compare(&pkgs[a].version, &pkgs[b].version).then(b.cmp(&a)));
    match names.len() {
        0 => bail!("no package provides {dep}"),
        1 => Ok(best(&mut providers.iter().copied()).unwrap_or(providers[0])),
        _ => {
            let top = providers.iter().filter_map(|&i| pkgs[i].provider_priority).max();
            match top {
                Some(t) => Ok(best(&mut providers.iter().copied().filter(|&i| pkgs[i].provider_priority == Some(t))).unwrap_or(providers[0])),
                None => bail!("{dep} is provided by {}: name one of them", names.into_iter().collect::<Vec<_>>().join(", ")),
            }
        }
    }
}

/// Dependencies first (cycles broken where they close), ties by name.
fn order(pkgs: &[Package], chosen: &[usize]) -> Vec<usize> {
    let mut sorted = chosen.to_vec();
    sorted.sort_by(|&a, &b| pkgs[a].name.cmp(&pkgs[b].name));
    fn visit(i: usize, pkgs: &[Package], set: &[usize], seen: &mut BTreeSet<usize>, out: &mut Vec<usize>) {
        if !seen.insert(i) {
            return;
        }
        for d in pkgs[i].depends.iter().filter(|d| !d.conflict) {
            if let Some(&j) = set.iter().find(|&&j| pkgs[j].satisfies(d)) {
                visit(j, pkgs, set, seen, out);
            }
        }
        out.push(i);
    }
    let (mut seen, mut out) = (BTreeSet::new(), Vec::new());
    for &i in &sorted {
        visit(i, pkgs, &sorted, &mut seen, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packages::alpine::index::parse;

    const IDX: &str = "P:musl\nV:1.2.5-r0\np:so:libc.musl-x86_64.so.1=1\n\nP:busybox\nV:1.36.1-r1\nD:so:libc.musl-x86_64.so.1\np:/bin/sh cmd:sh=1.36.1-r1\n\nP:busybox\nV:1.36.1-r2\nD:so:libc.musl-x86_64.so.1\np:/bin/sh cmd:sh=1.36.1-r2\n\nP:hello\nV:1.0-r0\nD:/bin/sh so:libc.musl-x86_64.so.1 !hello-legacy\n\nP:hello-doc\nV:1.0-r0\ni:docs hello=1.0-r0\n\nP:docs\nV:1-r0\n\nP:hello-legacy\nV:0.1-r0\n\nP:mta-a\nV:1-r0\np:mta\n\nP:mta-b\nV:1-r0\np:mta\n";

    #[test]
    fn provisions_versions_install_if_and_conflicts() {
        let pkgs = parse(IDX, "i", 0).unwrap();
        let tags = [None];
        let r = resolve(&pkgs, &tags, &["hello".into(), "docs".into()]).unwrap();
        let got: Vec<String> = r.order.iter().map(|&i| format!("{}-{}", pkgs[i].name, pkgs[i].version)).collect();
        assert_eq!(got, ["musl-1.2.5-r0", "busybox-1.36.1-r2", "docs-1-r0", "hello-1.0-r0", "hello-doc-1.0-r0"]);
        assert_eq!(r.reasons["musl"], "(world: hello) → hello");
        assert_eq!(r.reasons["hello-doc"], "(install_if)");
        let err = format!("{:#}", resolve(&pkgs, &tags, &["hello".into(), "hello-legacy".into()]).unwrap_err());
        assert!(err.contains("hello conflicts with hello-legacy"), "{err}");
        let err = format!("{:#}", resolve(&pkgs, &tags, &["mta".into()]).unwrap_err());
        assert!(err.contains("mta is provided by mta-a, mta-b"), "{err}");
        let err = format!("{:#}", resolve(&pkgs, &tags, &["busybox>=2".into()]).unwrap_err());
        assert!(err.contains("no package provides busybox>=2"), "{err}");
    }
}
