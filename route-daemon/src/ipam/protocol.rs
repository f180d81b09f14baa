//! The IPAM protocol on the daemon's side: a [`Request`] read from the socket
//! becomes a typed call on the allocation engine, its result a [`Response`], and
//! an engine error the code the plugin hands to the container runtime.
//!
//! The wire types are `railyard_core::ipam`'s, shared with the plugin (which
//! depends on the core only); the engine, `railyard-allocdb`, knows nothing of
//! them. The socket, the peer check and the trust gate are in `server.rs`.

use std::path::Path;

use railyard_allocdb::{AddArgs, AllocDb, DbError};
use railyard_core::attach::DeviceClass;
use railyard_core::ipam::{codes, ErrorReply, Request, Response};
use railyard_core::Nic;

/// The CNI spec's code 50, "the plugin is not available": what STATUS answers
/// while nothing can be allocated, so the runtime marks the network not ready.
pub const NOT_READY: u32 = 50;

/// The operation's name, for the metrics and the log.
pub fn op_name(req: &Request) -> &'static str {
    match req {
        Request::Add { .. } => "add",
        Request::Del { .. } => "del",
        Request::Check { .. } => "check",
        Request::Gc { .. } => "gc",
        Request::Status { .. } => "status",
        Request::Choose { .. } => "choose",
    }
}

/// Serves one request, errors included. `nics` are the host's NICs as
/// discovered now, `classes` the known DeviceClasses (both for ADD).
pub async fn dispatch(
    db: &AllocDb,
    req: Request,
    nics: &[Nic],
    classes: &[DeviceClass],
) -> Response {
    let result = match req {
        Request::Add {
            attachment,
            pod,
            selection,
            master,
        } => {
            let args = AddArgs {
                attachment,
                pod,
                selection,
                master,
            };
            db.add(&args, nics, classes)
                .await
                .map(|nics| Response::Added { nics })
        }
        Request::Choose {
            attachment,
            pod,
            selection,
        } => {
            let args = AddArgs {
                attachment,
                pod,
                selection,
                master: None,
            };
            db.choose(&args, nics, classes)
                .map(|nics| Response::Chosen { nics })
        }
        Request::Del { attachment } => db.del(&attachment).await.map(|()| Response::Done),
        Request::Check { attachment } => db.check(&attachment).await.map(|_| Response::Done),
        Request::Gc { network, valid } => db
            .gc(&network, &valid)
            .await
            .map(|released| Response::Collected { released }),
        Request::Status { network } => {
            return match db.status(&network) {
                Ok(()) => Response::Done,
                Err(e) => Response::Error(status_reply(&e)),
            };
        }
    };
    result.unwrap_or_else(|e| Response::Error(reply(&e)))
}

/// The protocol code for an engine error (see `railyard_core::ipam::codes`).
pub fn code(e: &DbError) -> u32 {
    match e {
        DbError::UnknownNetwork(_) | DbError::LogUnwritable(_) => codes::TRY_AGAIN_LATER,
        DbError::UnknownAttachment(_) => codes::UNKNOWN_CONTAINER,
        DbError::Select(e) => e.code(),
        DbError::Exhausted { .. } => codes::BLOCK_EXHAUSTED,
        DbError::Invalid(_) => codes::INVALID_CONFIG,
        DbError::Io { .. }
        | DbError::Corrupt { .. }
        | DbError::NewerFormat { .. }
        | DbError::Locked { .. }
        | DbError::Failed(_)
        | DbError::Inconsistent { .. } => codes::REFUSED,
    }
}

/// An engine error as the plugin receives it: its code and its message.
pub fn reply(e: &DbError) -> ErrorReply {
    ErrorReply {
        code: code(e),
        message: e.to_string(),
    }
}

/// STATUS speaks the CNI spec's "not ready" for a log that cannot be written:
/// the runtime stops sending pods. Other errors keep their code.
fn status_reply(e: &DbError) -> ErrorReply {
    let mut r = reply(e);
    if matches!(e, DbError::LogUnwritable(_)) {
        r.code = NOT_READY;
    }
    r
}

/// The answer while a log that was empty at start waits for etcd (see
/// `IpamContext::trusted`): retry later, and for STATUS "not ready".
pub fn untrusted(log_dir: &Path, op: &str) -> Response {
    Response::Error(ErrorReply {
        code: if op == "status" {
            NOT_READY
        } else {
            codes::TRY_AGAIN_LATER
        },
        message: format!(
            "the allocation log in {} was empty when the daemon started (a new host, or a lost state dir): \
             nothing is served until this host's allocations are recovered from etcd \
             (/railyard/v1/allocations/<network>/<host>/); is etcd reachable?",
            log_dir.display()
        ),
    })
}

/// A request refused before it reached the engine (malformed, too long, a peer
/// that is not allowed).
pub fn refuse(message: String) -> Response {
    Response::Error(ErrorReply {
        code: codes::REFUSED,
        message,
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use railyard_allocdb::{NetworkConfig, Options};
    use railyard_core::attach::SelectError;
    use railyard_core::ipam::{AttachmentId, Selection};
    use railyard_core::{Block, Interface, Strategy};

    use super::*;

    const NET: &str = "net1";

    fn id(c: &str) -> AttachmentId {
        AttachmentId {
            network: NET.into(),
            container_id: c.into(),
            ifname: "net1".into(),
        }
    }

    /// Two rails, a /24 per NIC; `ethR` holds 10.0.R.1, its blocks' nicAddress.
    fn two_rails() -> (NetworkConfig, Vec<Nic>) {
        let cfg = NetworkConfig {
            routes: Vec::new(),
            pools: Vec::new(),
            gateway: Default::default(),
            name: NET.into(),
            strategy: Strategy::None,
            policy_target: String::new(),
            excludes: vec![],
            interfaces: (0..2u32)
                .map(|r| Interface {
                    index: r,
                    net_address: format!("10.0.{r}.0/24").parse().unwrap(),
                    cidrs: vec![format!("192.168.{}.0/18", 64 * r).parse().unwrap()],
                })
                .collect(),
            blocks: (0..2u32)
                .map(|r| Block {
                    interface: r,
                    nic: format!("eth{r}").parse().unwrap(),
                    nic_address: format!("10.0.{r}.1").parse().unwrap(),
                    cidr: format!("192.168.{}.0/24", 64 * r + 1).parse().unwrap(),
                })
                .collect(),
        };
        let nics = (0..2u32)
            .map(|r| Nic {
                name: format!("eth{r}"),
                addresses: vec![format!("10.0.{r}.1/24").parse().unwrap()],
                up: true,
                ..Nic::default()
            })
            .collect();
        (cfg, nics)
    }

    #[tokio::test]
    async fn requests_map_to_typed_calls_and_responses() {
        let dir = tempfile::tempdir().unwrap();
        let db = AllocDb::open(dir.path(), Options::default()).unwrap();
        let (cfg, nics) = two_rails();
        db.set_network(cfg).await.unwrap();
        let add = |nics| Request::Add {
            attachment: id("c1"),
            pod: Default::default(),
            selection: Selection {
                nics,
                ..Selection::default()
            },
            master: None,
        };
        match dispatch(&db, add(Some(3)), &nics, &[]).await {
            Response::Error(e) => {
                assert_eq!(e.code, codes::NO_NIC);
                assert!(
                    e.message.contains("asked for 3 NICs, 2 available"),
                    "{}",
                    e.message
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            dispatch(&db, add(None), &nics, &[]).await,
            Response::Added { nics } if nics.len() == 2
        ));
        let check = Request::Check {
            attachment: id("c1"),
        };
        assert_eq!(dispatch(&db, check, &nics, &[]).await, Response::Done);
        let gc = Request::Gc {
            network: NET.into(),
            valid: vec![],
        };
        assert_eq!(
            dispatch(&db, gc, &nics, &[]).await,
            Response::Collected { released: 1 }
        );
        let del = Request::Del {
            attachment: id("c1"),
        };
        assert_eq!(dispatch(&db, del, &nics, &[]).await, Response::Done);
        let check = Request::Check {
            attachment: id("c1"),
        };
        assert!(matches!(
            dispatch(&db, check, &nics, &[]).await,
            Response::Error(e) if e.code == codes::UNKNOWN_CONTAINER
        ));
        let status = |network: &str| Request::Status {
            network: network.into(),
        };
        assert_eq!(dispatch(&db, status(NET), &nics, &[]).await, Response::Done);
        assert!(matches!(
            dispatch(&db, status("x"), &nics, &[]).await,
            Response::Error(e) if e.code == codes::TRY_AGAIN_LATER
        ));
    }

    #[tokio::test]
    async fn choose_answers_the_nics_and_blocks_and_records_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let db = AllocDb::open(dir.path(), Options::default()).unwrap();
        let (cfg, nics) = two_rails();
        db.set_network(cfg).await.unwrap();
        let choose = |nics: Option<u32>| Request::Choose {
            attachment: id("c1"),
            pod: Default::default(),
            selection: Selection {
                nics,
                ..Selection::default()
            },
        };
        assert_eq!(op_name(&choose(None)), "choose");
        match dispatch(&db, choose(None), &nics, &[]).await {
            Response::Chosen { nics } => {
                let got: Vec<(String, String)> = nics
                    .iter()
                    .map(|n| (n.nic.to_string(), n.blocks[0].cidr.to_string()))
                    .collect();
                assert_eq!(
                    got,
                    [
                        ("eth0".to_string(), "192.168.1.0/24".to_string()),
                        ("eth1".to_string(), "192.168.65.0/24".to_string())
                    ]
                );
            }
            other => panic!("{other:?}"),
        }
        match dispatch(&db, choose(Some(3)), &nics, &[]).await {
            Response::Error(e) => assert_eq!(e.code, codes::NO_NIC, "{}", e.message),
            other => panic!("{other:?}"),
        }
        let check = Request::Check {
            attachment: id("c1"),
        };
        assert!(matches!(
            dispatch(&db, check, &nics, &[]).await,
            Response::Error(e) if e.code == codes::UNKNOWN_CONTAINER
        ));
    }

    #[test]
    fn every_engine_error_has_its_code() {
        let path = PathBuf::from("/x");
        let select = |invalid: bool| {
            DbError::Select(if invalid {
                SelectError::Invalid {
                    policy: "p".into(),
                    reason: "r".into(),
                }
            } else {
                SelectError::Unsatisfiable {
                    policy: "p".into(),
                    asked: "3 NICs".into(),
                    available: 2,
                    detail: String::new(),
                }
            })
        };
        let cases = [
            (
                DbError::Io {
                    path: path.clone(),
                    source: std::io::Error::other("x"),
                },
                codes::REFUSED,
            ),
            (
                DbError::Corrupt {
                    path: path.clone(),
                    offset: 0,
                    reason: "x".into(),
                },
                codes::REFUSED,
            ),
            (DbError::Locked { path }, codes::REFUSED),
            (DbError::Failed("x".into()), codes::REFUSED),
            (
                DbError::Inconsistent {
                    id: id("c"),
                    reason: "x".into(),
                },
                codes::REFUSED,
            ),
            (DbError::LogUnwritable("x".into()), codes::TRY_AGAIN_LATER),
            (DbError::UnknownNetwork(NET.into()), codes::TRY_AGAIN_LATER),
            (
                DbError::UnknownAttachment(id("c")),
                codes::UNKNOWN_CONTAINER,
            ),
            (select(false), codes::NO_NIC),
            (select(true), codes::INVALID_CONFIG),
            (
                DbError::Exhausted {
                    network: NET.into(),
                    nic: "eth0".into(),
                    block: "192.168.1.0/30".into(),
                    allocated: 1,
                },
                codes::BLOCK_EXHAUSTED,
            ),
            (DbError::Invalid("x".into()), codes::INVALID_CONFIG),
        ];
        for (e, want) in cases {
            let r = reply(&e);
            assert_eq!(r.code, want, "{e}");
            assert_eq!(r.message, e.to_string());
            // STATUS differs only for a log that cannot be written.
            let status = status_reply(&e).code;
            if matches!(e, DbError::LogUnwritable(_)) {
                assert_eq!(status, NOT_READY);
            } else {
                assert_eq!(status, want, "{e}");
            }
        }
    }

    #[test]
    fn an_untrusted_log_answers_try_later_and_status_not_ready() {
        let dir = Path::new("/var/lib/railyard/allocations");
        for (op, want) in [("add", codes::TRY_AGAIN_LATER), ("status", NOT_READY)] {
            match untrusted(dir, op) {
                Response::Error(e) => {
                    assert_eq!(e.code, want, "{op}");
                    assert!(e.message.contains("/var/lib/railyard/allocations"));
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
