//! Warm latency with hostile clients parked on the API listener: connections
//! that sent half a request head and then nothing (slowloris). Each run
//! measures the server quiet and with `STALLED` such connections, in
//! alternating order, so the row shows what stalled clients cost everyone
//! else (issue 15: a listener sheds them without slowing normal requests).

use std::net::SocketAddr;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use crate::client::Http;
use crate::fixtures::Lang;
use crate::measure;
use crate::nimbus::Nimbus;
use crate::stats::Percentiles;

/// Connections stalled inside their request heads during the "stalled" runs.
pub const STALLED: usize = 300;

pub struct Stalled {
    pub lang: Lang,
    pub quiet: Vec<Percentiles>,
    pub stalled: Vec<Percentiles>,
}

async fn park(addr: SocketAddr) -> Result<Vec<TcpStream>> {
    let mut parked = Vec::with_capacity(STALLED);
    for _ in 0..STALLED {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"POST /v1/functions/x/invoke HTTP/1.1\r\nHost: bench\r\nContent-Le")
            .await?;
        parked.push(s);
    }
    Ok(parked)
}

pub async fn latency(
    nimbus: &Nimbus,
    http: &Http,
    lang: Lang,
    runs: usize,
    warmup: usize,
    requests: usize,
) -> Result<Stalled> {
    let uri = nimbus.invoke_uri(lang)?;
    let addr: SocketAddr = format!(
        "{}:{}",
        uri.host().context("the API has a host")?,
        uri.port_u16().context("the API has a port")?
    )
    .parse()?;
    let mut row = Stalled {
        lang,
        quiet: Vec::new(),
        stalled: Vec::new(),
    };
    for run in 0..runs {
        progress!("stalled-clients run {}/{}", run + 1, runs);
        for with_stalls in [run % 2 == 0, run % 2 != 0] {
            if with_stalls {
                let parked = park(addr).await?;
                row.stalled
                    .push(measure::latency(http, &uri, warmup, requests).await?);
                drop(parked);
            } else {
                row.quiet
                    .push(measure::latency(http, &uri, warmup, requests).await?);
            }
        }
    }
    Ok(row)
}
