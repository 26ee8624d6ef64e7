//! The hello handler in each language, embedded from `bench/fixtures/` so the
//! binary is self-contained: zipped for Nimbus, written to disk for the bare
//! servers. Both sides run the very same handler source.

use std::io::{Cursor, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use zip::CompressionMethod;
use zip::write::SimpleFileOptions;

const PYTHON_APP: &str = include_str!("../fixtures/python/app.py");
const NODE_HANDLER: &str = include_str!("../fixtures/node/index.mjs");
const NODE_SERVER: &str = include_str!("../fixtures/node/server.mjs");
const SERVERLESS_YML: &str = include_str!("../fixtures/node/serverless.yml");

/// What every variant must answer.
pub const HELLO: &str = "Hello, World!";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lang {
    Python,
    Node,
}

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::Python, Lang::Node];

    pub fn label(self) -> &'static str {
        match self {
            Lang::Python => "python",
            Lang::Node => "node",
        }
    }

    /// The Nimbus function that runs this handler.
    pub fn function_name(self) -> &'static str {
        match self {
            Lang::Python => "bench-hello-python",
            Lang::Node => "bench-hello-node",
        }
    }

    pub fn runtime(self) -> &'static str {
        match self {
            Lang::Python => "python3",
            Lang::Node => "nodejs",
        }
    }

    pub fn handler(self) -> &'static str {
        match self {
            Lang::Python => "app.handler",
            Lang::Node => "index.handler",
        }
    }

    /// The code package Nimbus deploys: the handler file alone, deflated.
    pub fn package(self) -> Result<Vec<u8>> {
        let (file, source) = match self {
            Lang::Python => ("app.py", PYTHON_APP),
            Lang::Node => ("index.mjs", NODE_HANDLER),
        };
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Deflated)
            .unix_permissions(0o644);
        let mut zip = zip::ZipWriter::new(Cursor::new(Vec::new()));
        zip.start_file(file, options)?;
        zip.write_all(source.as_bytes())?;
        Ok(zip.finish()?.into_inner())
    }

    /// Where the bare server of this language is started (its working directory).
    pub fn bare_dir(self, root: &Path) -> PathBuf {
        root.join(self.label())
    }
}

/// The serverless-offline service directory (serverless.yml and the Node handler).
pub fn serverless_dir(root: &Path) -> PathBuf {
    root.join("serverless-offline")
}

/// Writes the bare servers' sources under `root/python` and `root/node`, and
/// the serverless-offline service under `root/serverless-offline`.
pub fn write_bare(root: &Path) -> Result<()> {
    let files = [
        (Lang::Python.bare_dir(root), "app.py", PYTHON_APP),
        (Lang::Node.bare_dir(root), "index.mjs", NODE_HANDLER),
        (Lang::Node.bare_dir(root), "server.mjs", NODE_SERVER),
        (serverless_dir(root), "index.mjs", NODE_HANDLER),
        (serverless_dir(root), "serverless.yml", SERVERLESS_YML),
    ];
    for (dir, name, source) in files {
        std::fs::create_dir_all(&dir)?;
        let path = dir.join(name);
        std::fs::write(&path, source)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}
