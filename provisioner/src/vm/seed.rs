//! First-boot configuration the ecosystem's way: a NoCloud seed, a small filesystem labelled
//! `cidata` (attached as the machine's second disk) holding `meta-data`, `user-data` and
//! `network-config`, which cloud-init in the OS image reads on its first boot. It carries
//! the hostname, the customer's SSH keys and root password hash (`InstanceSpec.access`), and
//! the static address the panel assigned (`InstanceSpec.network`, network-config v2 matched
//! by the MAC the host gives the machine's card).
//!
//! The files are JSON, which YAML parsers (cloud-init's included) read as YAML; `user-data`
//! starts with the `#cloud-config` line cloud-init needs.

use crate::hostnet::MacAddr;
use serde_json::json;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use thiserror::Error;
use vessel_core::InstanceSpec;

#[derive(Debug, Error)]
pub enum SeedError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// The three files of a NoCloud seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seed {
    pub meta_data: String,
    pub user_data: String,
    pub network_config: String,
}

/// Public resolvers the guest is told about when its pools name none (the host runs no
/// resolver for it).
const NAMESERVERS: [&str; 2] = ["1.1.1.1", "9.9.9.9"];

/// The resolvers of the machine's address pools (the admin's, as the ready mail shows them), or
/// the public defaults.
fn nameservers(spec: &InstanceSpec) -> Vec<String> {
    if spec.network.dns.is_empty() {
        NAMESERVERS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.network.dns.iter().map(|a| a.to_string()).collect()
    }
}

impl Seed {
    pub fn for_instance(spec: &InstanceSpec, mac: MacAddr) -> Self {
        let host = spec.hostname.to_string();
        let meta = json!({ "instance-id": spec.id.to_string(), "local-hostname": host });
        let keys: Vec<String> = spec.access.ssh_keys.iter().map(|k| k.to_line()).collect();
        let mut root = json!({ "name": "root", "ssh_authorized_keys": keys, "lock_passwd": spec.access.root_password_hash.is_none() });
        if let Some(h) = &spec.access.root_password_hash {
            root["hashed_passwd"] = json!(h.as_str());
        }
        let user = json!({
            "hostname": host.split('.').next().unwrap_or(&host),
            "fqdn": host,
            "preserve_hostname": false,
            // The name resolves on the machine itself (`hostname -f`, sudo).
            "manage_etc_hosts": true,
            "disable_root": false,
            "ssh_pwauth": spec.access.root_password_hash.is_some(),
            "users": [root],
            // The disk is grown to the plan's size on the host; the guest grows its partition
            // and filesystem into it.
            "growpart": { "mode": "auto", "devices": ["/"] },
            "resize_rootfs": true,
        });
        // The default routes as `gateway4`/`gateway6`: every renderer of cloud-init turns them
        // into its own gateway setting (ifupdown's `gateway`), where a `routes` entry becomes a
        // `route add` command on bookworm's ifupdown, which needs net-tools.
        let mut eth = json!({
            "match": { "macaddress": mac.to_string() },
            "set-name": "eth0",
            "addresses": [],
            "nameservers": { "addresses": nameservers(spec) },
        });
        if let Some(a) = &spec.network.ipv4 {
            eth["addresses"].as_array_mut().expect("an array").push(json!(format!("{}/{}", a.address, a.prefix_len)));
            eth["gateway4"] = json!(a.gateway.to_string());
        }
        if let Some(a) = &spec.network.ipv6 {
            eth["addresses"].as_array_mut().expect("an array").push(json!(format!("{}/{}", a.address, a.prefix_len)));
            eth["gateway6"] = json!(a.gateway.to_string());
        }
        let net = json!({ "version": 2, "ethernets": { "eth0": eth } });
        Seed {
            meta_data: serde_json::to_string_pretty(&meta).expect("JSON"),
            user_data: format!("#cloud-config\n{}\n", serde_json::to_string_pretty(&user).expect("JSON")),
            network_config: serde_json::to_string_pretty(&net).expect("JSON"),
        }
    }

    /// Writes the seed as a small FAT filesystem labelled `cidata` at `image` (replacing what
    /// is there: made under a temporary name and renamed into place). FAT (or iso9660) is what
    /// cloud-init's NoCloud looks for: it takes a `cidata` label only on those two types.
    pub fn write_image(&self, image: &Path) -> Result<(), SeedError> {
        let err = |source: std::io::Error| SeedError::Io { path: image.to_path_buf(), source };
        let tmp = image.with_extension("new");
        let f = std::fs::OpenOptions::new().create(true).truncate(true).read(true).write(true).open(&tmp).map_err(err)?;
        f.set_len(SEED_BYTES).map_err(err)?;
        let mut f = f;
        fatfs::format_volume(&mut f, fatfs::FormatVolumeOptions::new().volume_label(*LABEL)).map_err(err)?;
        f.seek(SeekFrom::Start(0)).map_err(err)?;
        {
            let fs = fatfs::FileSystem::new(&mut f, fatfs::FsOptions::new()).map_err(err)?;
            for (name, text) in self.files() {
                let mut file = fs.root_dir().create_file(name).map_err(err)?;
                file.truncate().map_err(err)?;
                file.write_all(text.as_bytes()).map_err(err)?;
                file.flush().map_err(err)?;
            }
            fs.unmount().map_err(err)?;
        }
        f.sync_all().map_err(err)?;
        drop(f);
        std::fs::rename(&tmp, image).map_err(err)
    }

    /// The three files by their NoCloud names.
    pub fn files(&self) -> [(&'static str, &str); 3] {
        [("meta-data", &self.meta_data), ("user-data", &self.user_data), ("network-config", &self.network_config)]
    }

    /// Reads a seed back from an image [`Seed::write_image`] made (the tests; a host's checks).
    pub fn read_image(image: &Path) -> Result<(String, Seed), SeedError> {
        let err = |source: std::io::Error| SeedError::Io { path: image.to_path_buf(), source };
        let f = std::fs::File::open(image).map_err(err)?;
        let fs = fatfs::FileSystem::new(f, fatfs::FsOptions::new()).map_err(err)?;
        let read = |name: &str| -> Result<String, SeedError> {
            let mut s = String::new();
            fs.root_dir().open_file(name).and_then(|mut f| f.read_to_string(&mut s)).map_err(err)?;
            Ok(s)
        };
        let seed = Seed { meta_data: read("meta-data")?, user_data: read("user-data")?, network_config: read("network-config")? };
        Ok((fs.volume_label(), seed))
    }
}

/// The volume label NoCloud looks for (space padded, as FAT stores it).
const LABEL: &[u8; 11] = b"cidata     ";
/// 1 MiB: a FAT12 volume with room for a few hundred SSH keys.
const SEED_BYTES: u64 = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use vessel_core::access::{Access, PasswordHash, SshPublicKey};
    use vessel_core::lifecycle::{Ipv4Assignment, Ipv6Assignment, NetworkSpec};

    const KEY: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl alice@laptop";

    fn spec() -> InstanceSpec {
        let mut s = crate::store::tests::spec(vessel_core::InstanceKind::Kvm);
        s.access = Access::new(
            vec![SshPublicKey::parse(KEY).unwrap()],
            Some(
                PasswordHash::parse("$6$saltsalt$3kZ1Xb0jYtqnB3yqQ1o8yFQ8yCw5xqGkz8zO0xkq6bqE2q0V2H1k3bLq2S0Qv8m9j1yQq1y0q9Zq3z1x0y1z2.")
                    .unwrap(),
            ),
        )
        .unwrap();
        s.network = NetworkSpec {
            ipv4: Some(Ipv4Assignment {
                address: "203.0.113.7".parse().unwrap(),
                prefix_len: 24,
                gateway: "203.0.113.1".parse().unwrap(),
                nat: false,
            }),
            ipv6: Some(Ipv6Assignment { address: "2001:db8::7".parse().unwrap(), prefix_len: 64, gateway: "2001:db8::1".parse().unwrap() }),
            dns: Vec::new(),
        };
        s
    }

    #[test]
    fn the_seed_carries_hostname_keys_password_and_static_address() {
        let s = spec();
        let mac = MacAddr([2, 1, 2, 3, 4, 5]);
        let seed = Seed::for_instance(&s, mac);
        let meta: serde_json::Value = serde_json::from_str(&seed.meta_data).unwrap();
        assert_eq!(meta["instance-id"], s.id.to_string());
        assert_eq!(meta["local-hostname"], s.hostname.to_string());
        let body = seed.user_data.strip_prefix("#cloud-config\n").expect("the #cloud-config line first");
        let user: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(user["fqdn"], s.hostname.to_string());
        let root = &user["users"][0];
        assert_eq!(root["name"], "root");
        assert_eq!(root["ssh_authorized_keys"][0], SshPublicKey::parse(KEY).unwrap().to_line());
        assert_eq!(root["hashed_passwd"], s.access.root_password_hash.as_ref().unwrap().as_str());
        assert_eq!((root["lock_passwd"].as_bool(), user["ssh_pwauth"].as_bool()), (Some(false), Some(true)));
        let net: serde_json::Value = serde_json::from_str(&seed.network_config).unwrap();
        let eth = &net["ethernets"]["eth0"];
        assert_eq!(net["version"], 2);
        assert_eq!(eth["match"]["macaddress"], "02:01:02:03:04:05");
        assert_eq!(eth["addresses"][0], "203.0.113.7/24");
        assert_eq!(eth["gateway4"], "203.0.113.1");
        assert_eq!((&eth["addresses"][1], &eth["gateway6"]), (&json!("2001:db8::7/64"), &json!("2001:db8::1")));
        assert_eq!(eth["set-name"], "eth0");
        assert_eq!(eth["nameservers"]["addresses"], json!(NAMESERVERS));
        // The pool's resolvers, when the admin set them, are the ones the guest is told about.
        let mut pooled = s.clone();
        pooled.network.dns = vec!["192.0.2.53".parse().unwrap(), "2001:db8::53".parse().unwrap()];
        let net: serde_json::Value = serde_json::from_str(&Seed::for_instance(&pooled, mac).network_config).unwrap();
        assert_eq!(net["ethernets"]["eth0"]["nameservers"]["addresses"], json!(["192.0.2.53", "2001:db8::53"]));
        assert_eq!(
            (user["hostname"].as_str(), user["manage_etc_hosts"].as_bool()),
            (Some(s.hostname.to_string().split('.').next().unwrap()), Some(true))
        );
        assert_eq!((user["disable_root"].as_bool(), user["preserve_hostname"].as_bool()), (Some(false), Some(false)));
        assert_eq!(user["growpart"]["devices"][0], "/");
        // Only the hash: nothing else in the seed looks like a password.
        assert!(!seed.user_data.contains("\"password\"") && !seed.user_data.contains("plain_text_passwd"), "{}", seed.user_data);

        // No password: root's password stays locked, password logins off.
        let mut keys_only = s.clone();
        keys_only.access.root_password_hash = None;
        let user: serde_json::Value =
            serde_json::from_str(Seed::for_instance(&keys_only, mac).user_data.trim_start_matches("#cloud-config\n")).unwrap();
        assert_eq!((user["users"][0]["lock_passwd"].as_bool(), user["ssh_pwauth"].as_bool()), (Some(true), Some(false)));
        assert!(user["users"][0].get("hashed_passwd").is_none());
    }

    #[test]
    fn the_seed_image_is_a_fat_volume_labelled_cidata_holding_the_three_files() {
        let dir = tempfile::tempdir().unwrap();
        let img = dir.path().join("seed.img");
        let seed = Seed::for_instance(&spec(), MacAddr([2, 0, 0, 0, 0, 1]));
        std::fs::write(&img, b"an older seed").unwrap();
        seed.write_image(&img).unwrap();
        let (label, back) = Seed::read_image(&img).unwrap();
        assert_eq!(label, "cidata");
        assert_eq!(back, seed);
        // What cloud-init's NoCloud asks (blkid from util-linux, not our crate): a vfat
        // filesystem labelled cidata.
        let out = std::process::Command::new("blkid").args(["-p", "-o", "export"]).arg(&img).output().expect("blkid (util-linux)");
        let info = String::from_utf8_lossy(&out.stdout);
        assert!(info.lines().any(|l| l == "TYPE=vfat"), "{info}");
        assert!(info.lines().any(|l| l == "LABEL=cidata"), "{info}");
        assert!(!dir.path().join("seed.new").exists(), "no temporary file left");
    }
}
