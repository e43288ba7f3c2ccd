//! The Pod edits: the secrets volume, the init container that renders into it (and the refresh sidecar), a
//! read-only mount in every container, and `keyway exec` in front of commands whose environment holds
//! secrets. A function of the Pod and its [`Ask`]: applied to a Pod it already mutated, it changes nothing.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Capabilities, Container, EmptyDirVolumeSource, EnvVar, Pod, PodSpec, SeccompProfile,
    SecurityContext, Volume, VolumeMount,
};

use crate::annotations::Ask;
use crate::command::{ExecCommand, RenderCommand};
use crate::resources::Resources;
use crate::{BIN_DIR, BIN_VOLUME, INIT_CONTAINER, InjectConfig, REFRESH_CONTAINER, VOLUME, flyte};

/// `/keyway/bin/keyway exec --env VAR=REF ... --` followed by the container's own command, unless it is wrapped
/// already. References are names, not values: the values are fetched by the container when it starts.
///
/// The command is known when the Pod spec sets `command`, or, for a Flyte task, when `args` start with one
/// of flytekit's entrypoints (on `PATH` in every flytekit image): then `command` becomes the wrapper and
/// `args` stay as they are. Otherwise the image's ENTRYPOINT runs, which the webhook cannot see, and the
/// warning says so.
fn wrap_command(container: &mut Container, ask: &Ask) -> Result<(), String> {
    let wrapper = format!("{BIN_DIR}/keyway");
    let mut exec = ExecCommand {
        program: wrapper.clone(),
        env: ask.env.clone(),
        watch: ask.env_restart,
    }
    .args();
    match container.command.as_mut().filter(|c| !c.is_empty()) {
        Some(command) if command[0] == wrapper => {}
        Some(command) => {
            exec.append(command);
            *command = exec;
        }
        None if ask.flyte.is_some()
            && container
                .args
                .as_ref()
                .and_then(|a| a.first())
                .is_some_and(|a| flyte::ENTRYPOINTS.contains(&a.as_str())) =>
        {
            container.command = Some(exec);
        }
        None => {
            return Err(format!(
                "keyway: container `{}` has no command in the Pod spec (it runs the image's ENTRYPOINT), so its environment cannot be wrapped with `keyway exec`; set command, or read the secret from a file",
                container.name
            ));
        }
    }
    Ok(())
}

/// The secrets volume (memory-backed) and, for environment delivery, the volume holding the keyway binary.
fn add_volumes(spec: &mut PodSpec, ask: &Ask) {
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    if !ask.env.is_empty() && !volumes.iter().any(|v| v.name == BIN_VOLUME) {
        volumes.push(Volume {
            name: BIN_VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource::default()),
            ..Volume::default()
        });
    }
    if !volumes.iter().any(|v| v.name == VOLUME) {
        volumes.push(Volume {
            name: VOLUME.to_owned(),
            empty_dir: Some(EmptyDirVolumeSource {
                medium: Some("Memory".to_owned()),
                ..EmptyDirVolumeSource::default()
            }),
            ..Volume::default()
        });
    }
}

/// Flyte's plain variables (flytekit reads /etc/secrets unless told otherwise), replacing any of the same name.
fn set_flyte_env(container: &mut Container, vars: &BTreeMap<String, String>) {
    let env = container.env.get_or_insert_with(Vec::new);
    for (name, value) in vars {
        env.retain(|e| &e.name != name);
        env.push(EnvVar {
            name: name.clone(),
            value: Some(value.clone()),
            value_from: None,
        });
    }
}

/// The mutated Pod, and warnings for the response.
pub fn mutate_pod(pod: &Pod, ask: &Ask, config: &InjectConfig) -> (Pod, Vec<String>) {
    let mut pod = pod.clone();
    let mut warnings = Vec::new();
    if ask.mode.others_read() {
        warnings.push(format!(
            "keyway.dev/mode {} lets every user in the Pod's containers read the secrets; set keyway.dev/owner \
             to the app's uid:gid and use 0400 (or 0440 for its group)",
            ask.mode
        ));
    }
    let spec = pod.spec.get_or_insert_with(PodSpec::default);
    add_volumes(spec, ask);
    for container in &mut spec.containers {
        add_mount(container, secrets_mount(ask, true));
        if !ask.env.is_empty() {
            match wrap_command(container, ask) {
                Ok(()) => add_mount(container, bin_mount(true)),
                Err(warning) => warnings.push(warning),
            }
        }
        if let Some(vars) = &ask.flyte {
            set_flyte_env(container, vars);
        }
    }
    // Flyte's injectors give the Pod's own init containers the files and variables too; they run after
    // Keyway's, which is first.
    if let Some(vars) = &ask.flyte {
        for container in spec
            .init_containers
            .iter_mut()
            .flatten()
            .filter(|c| c.name != INIT_CONTAINER && c.name != REFRESH_CONTAINER)
        {
            add_mount(container, secrets_mount(ask, true));
            set_flyte_env(container, vars);
        }
    }
    let (init, refresher) = added_containers(ask, config);
    let inits = spec.init_containers.get_or_insert_with(Vec::new);
    match inits.iter_mut().find(|c| c.name == INIT_CONTAINER) {
        Some(existing) => *existing = init,
        None => inits.insert(0, init),
    }
    if let Some(refresher) = refresher {
        match inits.iter_mut().find(|c| c.name == REFRESH_CONTAINER) {
            Some(existing) => *existing = refresher,
            None => inits.insert(1, refresher),
        }
    }
    (pod, warnings)
}

/// The init container that renders every secret before the app starts, and the refresh sidecar when the Pod
/// asks for one.
fn added_containers(ask: &Ask, config: &InjectConfig) -> (Container, Option<Container>) {
    let render = RenderCommand {
        program: "keyway".to_owned(),
        dir: ask.dir.clone(),
        mode: ask.mode,
        owner: ask.owner,
        install_self: (!ask.env.is_empty()).then(|| BIN_DIR.to_owned()),
        files: ask.files.clone(),
        templates: ask.templates.clone(),
        watch: None,
    };
    let init = Container {
        name: INIT_CONTAINER.to_owned(),
        image: Some(config.image.clone()),
        command: Some(render.args()),
        volume_mounts: Some(if ask.env.is_empty() {
            vec![secrets_mount(ask, false)]
        } else {
            vec![secrets_mount(ask, false), bin_mount(false)]
        }),
        security_context: Some(hardened(ask.owner.is_some())),
        resources: Some(
            ask.resources
                .or(&config.resources)
                .or(&Resources::default_amounts())
                .requirements(),
        ),
        ..Container::default()
    };
    // The refresh sidecar starts after the first render (which gates the app: init containers run in order)
    // and keeps running beside it; native sidecars do not keep a Job from finishing.
    let refresher = ask
        .refresh
        .filter(|_| !ask.files.is_empty() || !ask.templates.is_empty())
        .map(|interval| {
            let watch = RenderCommand {
                install_self: None,
                watch: Some(interval),
                ..render
            };
            Container {
                name: REFRESH_CONTAINER.to_owned(),
                command: Some(watch.args()),
                restart_policy: Some("Always".to_owned()),
                ..init.clone()
            }
        });
    (init, refresher)
}

fn secrets_mount(ask: &Ask, read_only: bool) -> VolumeMount {
    VolumeMount {
        name: VOLUME.to_owned(),
        mount_path: ask.dir.clone(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn bin_mount(read_only: bool) -> VolumeMount {
    VolumeMount {
        name: BIN_VOLUME.to_owned(),
        mount_path: BIN_DIR.to_owned(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

/// Adds `mount` unless the container mounts a volume of that name already (a Pod mutated before).
fn add_mount(container: &mut Container, mount: VolumeMount) {
    let mounts = container.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts.iter().any(|m| m.name == mount.name) {
        mounts.push(mount);
    }
}

/// The security context of the containers the webhook adds, as Kubernetes' `restricted` Pod Security
/// Standard asks of every container (a Pod in a namespace that enforces it is refused otherwise): no privilege
/// escalation, every capability dropped, the runtime's default seccomp profile. Without `keyway.dev/owner` the
/// container runs as the Pod's user, so the files belong to it and mode 0400 suffices; with it, it must run as
/// root to give the files away, with `CHOWN`, and `DAC_OVERRIDE` to write again into the directories it gave
/// away (the refresh sidecar); `restricted` forbids that, `baseline` allows it.
fn hardened(chown: bool) -> SecurityContext {
    SecurityContext {
        allow_privilege_escalation: Some(false),
        capabilities: Some(Capabilities {
            drop: Some(vec!["ALL".to_owned()]),
            add: chown.then(|| ["CHOWN", "DAC_OVERRIDE"].map(str::to_owned).to_vec()),
        }),
        seccomp_profile: Some(SeccompProfile {
            type_: "RuntimeDefault".to_owned(),
            localhost_profile: None,
        }),
        run_as_user: chown.then_some(0),
        run_as_non_root: chown.then_some(false),
        ..SecurityContext::default()
    }
}
