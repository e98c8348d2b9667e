//! `procexit service install|uninstall|start|stop`: `watch` as a Windows
//! service. The service manager starts `procexit service run --name NAME --
//! WATCH OPTIONS`; a stop, preshutdown or shutdown request stops the
//! monitor (and with it the ETW session), the sinks write what they hold
//! and the closing stats record, and the service reports itself stopped.
//! The monitor runs in the library's service mode, so its console handler
//! leaves the session alone on logoff and shutdown console events (a
//! service is not ended by them; the service manager's request comes).
//!
//! On other systems these commands say what to use instead.

use std::process::ExitCode;

use crate::args::ServiceArgs;

/// Runs one `service` command.
pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
    #[cfg(windows)]
    {
        windows::run(args)
    }
    #[cfg(not(windows))]
    {
        let _ = args.action;
        anyhow::bail!(
            "procexit service manages a Windows service; on Linux install \
             packaging/procexit.service as a systemd unit (see docs/outputs.md)"
        )
    }
}

/// The `watch` options given to `service install`, checked by parsing them
/// as `procexit watch` would.
#[cfg_attr(not(windows), allow(dead_code))] // Windows (and tests) only
pub fn parse_watch_options(
    options: &[std::ffi::OsString],
) -> anyhow::Result<crate::args::WatchArgs> {
    crate::args::parse_watch(options)
        .map_err(|error| anyhow::anyhow!("invalid watch options for the service: {error}"))
}

/// Whether `watch` with these options writes somewhere a service can use
/// (a service has no console for stdout).
#[cfg_attr(not(windows), allow(dead_code))] // Windows (and tests) only
pub fn has_sink(watch: &crate::args::WatchArgs) -> bool {
    watch.sinks.any()
}

#[cfg(windows)]
mod windows {
    use std::ffi::{OsStr, OsString};
    use std::process::ExitCode;
    use std::sync::atomic::AtomicBool;
    use std::sync::{Arc, OnceLock};
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use windows_service::service::{
        ServiceAccess, ServiceControl, ServiceControlAccept, ServiceErrorControl, ServiceExitCode,
        ServiceInfo, ServiceStartType, ServiceState, ServiceStatus, ServiceType,
    };
    use windows_service::service_control_handler::{self, ServiceControlHandlerResult};
    use windows_service::service_dispatcher;
    use windows_service::service_manager::{ServiceManager, ServiceManagerAccess};

    use super::{has_sink, parse_watch_options};
    use crate::args::{ServiceAction, ServiceArgs};

    const SERVICE_TYPE: ServiceType = ServiceType::OWN_PROCESS;
    /// Service-specific exit code when `watch` failed (as its exit status).
    const EXIT_WATCH_FAILED: u32 = 2;

    pub fn run(args: ServiceArgs) -> anyhow::Result<ExitCode> {
        match args.action {
            ServiceAction::Install { name, options } => install(&name, &options),
            ServiceAction::Uninstall { name } => uninstall(&name),
            ServiceAction::Start { name } => start(&name),
            ServiceAction::Stop { name } => stop(&name),
            ServiceAction::Run { name, options } => run_service(name, options),
        }
    }

    fn manager(access: ServiceManagerAccess) -> anyhow::Result<ServiceManager> {
        ServiceManager::local_computer(None::<&str>, access).map_err(|e| {
            anyhow::anyhow!("cannot open the service manager: {e}; run as Administrator")
        })
    }

    fn install(name: &str, options: &[OsString]) -> anyhow::Result<ExitCode> {
        let watch = parse_watch_options(options)?;
        if !has_sink(&watch) {
            anyhow::bail!(
                "a service has no console: give it --output FILE or --syslog TARGET \
                 (for example: procexit service install --output C:\\ProgramData\\procexit\\exits.jsonl)"
            );
        }
        let manager =
            manager(ServiceManagerAccess::CONNECT | ServiceManagerAccess::CREATE_SERVICE)?;
        let executable = std::env::current_exe().context("cannot find procexit.exe")?;
        let mut arguments: Vec<OsString> = vec![
            "service".into(),
            "run".into(),
            "--name".into(),
            name.into(),
            "--".into(),
        ];
        arguments.extend(options.iter().cloned());
        let info = ServiceInfo {
            name: name.into(),
            display_name: format!("procexit ({name}): process exit monitor").into(),
            service_type: SERVICE_TYPE,
            start_type: ServiceStartType::AutoStart,
            error_control: ServiceErrorControl::Normal,
            executable_path: executable,
            launch_arguments: arguments,
            dependencies: vec![],
            account_name: None, // LocalSystem: ETW kernel sessions need it
            account_password: None,
        };
        let service = manager
            .create_service(&info, ServiceAccess::CHANGE_CONFIG)
            .map_err(|e| anyhow::anyhow!("cannot create the service {name}: {e}"))?;
        let _ =
            service.set_description("Records every process exit on this machine (procexit watch).");
        println!("installed service {name}; start it with: procexit service start --name {name}");
        Ok(ExitCode::SUCCESS)
    }

    fn uninstall(name: &str) -> anyhow::Result<ExitCode> {
        let manager = manager(ServiceManagerAccess::CONNECT)?;
        let service = manager
            .open_service(
                name,
                ServiceAccess::QUERY_STATUS | ServiceAccess::STOP | ServiceAccess::DELETE,
            )
            .map_err(|e| anyhow::anyhow!("cannot open the service {name}: {e}"))?;
        if service.query_status()?.current_state != ServiceState::Stopped {
            let _ = service.stop();
            wait_for(&service, ServiceState::Stopped, Duration::from_secs(30))?;
        }
        service
            .delete()
            .map_err(|e| anyhow::anyhow!("cannot delete the service {name}: {e}"))?;
        println!("uninstalled service {name}");
        Ok(ExitCode::SUCCESS)
    }

    fn start(name: &str) -> anyhow::Result<ExitCode> {
        let manager = manager(ServiceManagerAccess::CONNECT)?;
        let service = manager
            .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::START)
            .map_err(|e| anyhow::anyhow!("cannot open the service {name}: {e}"))?;
        service
            .start::<&OsStr>(&[])
            .map_err(|e| anyhow::anyhow!("cannot start the service {name}: {e}"))?;
        let status = wait_while(
            &service,
            ServiceState::StartPending,
            Duration::from_secs(30),
        )?;
        if status.current_state != ServiceState::Running {
            anyhow::bail!(
                "the service {name} stopped at once ({:?}); run the same `procexit watch` \
                 options in an elevated console to see why",
                status.exit_code
            );
        }
        println!("service {name} is running");
        Ok(ExitCode::SUCCESS)
    }

    fn stop(name: &str) -> anyhow::Result<ExitCode> {
        let manager = manager(ServiceManagerAccess::CONNECT)?;
        let service = manager
            .open_service(name, ServiceAccess::QUERY_STATUS | ServiceAccess::STOP)
            .map_err(|e| anyhow::anyhow!("cannot open the service {name}: {e}"))?;
        service
            .stop()
            .map_err(|e| anyhow::anyhow!("cannot stop the service {name}: {e}"))?;
        let status = wait_for(&service, ServiceState::Stopped, Duration::from_secs(30))?;
        println!("service {name} stopped ({:?})", status.exit_code);
        Ok(ExitCode::SUCCESS)
    }

    fn wait_for(
        service: &windows_service::service::Service,
        state: ServiceState,
        timeout: Duration,
    ) -> anyhow::Result<ServiceStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = service.query_status()?;
            if status.current_state == state || Instant::now() >= deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn wait_while(
        service: &windows_service::service::Service,
        state: ServiceState,
        timeout: Duration,
    ) -> anyhow::Result<ServiceStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let status = service.query_status()?;
            if status.current_state != state || Instant::now() >= deadline {
                return Ok(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// What the service main function needs; set before the dispatcher runs.
    struct ServiceSetup {
        name: String,
        options: Vec<OsString>,
    }

    static SETUP: OnceLock<ServiceSetup> = OnceLock::new();
    /// Where the control handler finds the monitor.
    static STOP: OnceLock<crate::signals::StopSlot> = OnceLock::new();

    fn run_service(name: String, options: Vec<OsString>) -> anyhow::Result<ExitCode> {
        // Refuse bad options here too, where a console may still show it.
        parse_watch_options(&options)?;
        let _ = SETUP.set(ServiceSetup {
            name: name.clone(),
            options,
        });
        service_dispatcher::start(&name, ffi_service_main).map_err(|e| {
            anyhow::anyhow!(
                "cannot connect to the service manager ({e}): `service run` is what the \
                 service manager starts; use `procexit service start --name {name}`"
            )
        })?;
        Ok(ExitCode::SUCCESS)
    }

    windows_service::define_windows_service!(ffi_service_main, service_main);

    fn service_main(_arguments: Vec<OsString>) {
        let Some(setup) = SETUP.get() else { return };
        let slot = STOP.get_or_init(Default::default);
        let handler = |control| match control {
            ServiceControl::Stop | ServiceControl::Shutdown | ServiceControl::Preshutdown => {
                slot.request();
                ServiceControlHandlerResult::NoError
            }
            ServiceControl::Interrogate => ServiceControlHandlerResult::NoError,
            _ => ServiceControlHandlerResult::NotImplemented,
        };
        let Ok(status) = service_control_handler::register(&setup.name, handler) else {
            return;
        };
        let report = |state, exit_code, wait_hint| {
            let _ = status.set_service_status(ServiceStatus {
                service_type: SERVICE_TYPE,
                current_state: state,
                // PRESHUTDOWN comes first at a system shutdown (with time
                // to write the closing stats); SHUTDOWN where preshutdown
                // is not sent.
                controls_accepted: if state == ServiceState::Running {
                    ServiceControlAccept::STOP
                        | ServiceControlAccept::PRESHUTDOWN
                        | ServiceControlAccept::SHUTDOWN
                } else {
                    ServiceControlAccept::empty()
                },
                exit_code,
                checkpoint: 0,
                wait_hint,
                process_id: None,
            });
        };
        report(
            ServiceState::StartPending,
            ServiceExitCode::NO_ERROR,
            Duration::from_secs(10),
        );
        let result = parse_watch_options(&setup.options).and_then(|watch| {
            let reopen = Arc::new(AtomicBool::new(false));
            crate::watch_with(watch, true, slot.clone(), reopen, || {
                report(
                    ServiceState::Running,
                    ServiceExitCode::NO_ERROR,
                    Duration::default(),
                )
            })
        });
        report(
            ServiceState::StopPending,
            ServiceExitCode::NO_ERROR,
            Duration::from_secs(10),
        );
        let exit_code = match result {
            Ok(code) if code == ExitCode::SUCCESS => ServiceExitCode::NO_ERROR,
            _ => ServiceExitCode::ServiceSpecific(EXIT_WATCH_FAILED),
        };
        report(ServiceState::Stopped, exit_code, Duration::default());
    }
}
