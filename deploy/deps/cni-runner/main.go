// railyard-cni-runner runs one CNI operation through libcni, the library every
// container runtime and Multus call plugins with, so railyard's plugins are
// tested as a runtime drives them (result caching, prevResult on CHECK and DEL,
// version negotiation, the GC and STATUS of CNI 1.1).
//
// cnitool (same module) cannot do this: its GC passes no valid attachments
// (everything is released) and it derives the container ID from the netns path.
//
// Built by `make deps` (deploy/deps/upstream.sh) against the libcni pinned in
// upstream.list. Usage:
//
//	railyard-cni-runner add|check|del|gc|status --conf FILE [--netns PATH]
//	    [--container-id ID] [--ifname NAME] [--valid ID/IFNAME,...] [--cache-dir DIR]
//
// Plugins are found on CNI_PATH. ADD prints the result. A failure prints the
// CNI error object ({"code": N, "msg": ..., "details": ...}; code 0 when the
// failure was not a plugin's CNI error) and exits 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
)

func main() {
	if len(os.Args) < 2 {
		fail(fmt.Errorf("usage: %s add|check|del|gc|status --conf FILE [flags]", filepath.Base(os.Args[0])))
	}
	command := os.Args[1]
	flags := flag.NewFlagSet(command, flag.ContinueOnError)
	conf := flags.String("conf", "", "network config (.conf or .conflist)")
	netns := flags.String("netns", "", "the container's network namespace path")
	containerID := flags.String("container-id", "", "the container ID")
	ifName := flags.String("ifname", "eth0", "the interface name in the container")
	valid := flags.String("valid", "", "GC: attachments to keep, as ID/IFNAME, comma separated")
	cacheDir := flags.String("cache-dir", "", "libcni's result cache (default /var/lib/cni)")
	if err := flags.Parse(os.Args[2:]); err != nil {
		fail(err)
	}
	if *conf == "" {
		fail(errors.New("--conf is required"))
	}
	list, err := libcni.NetworkConfFromFile(*conf)
	if err != nil {
		fail(err)
	}
	cni := libcni.NewCNIConfigWithCacheDir(filepath.SplitList(os.Getenv("CNI_PATH")), *cacheDir, nil)
	rt := &libcni.RuntimeConf{ContainerID: *containerID, NetNS: *netns, IfName: *ifName}
	ctx := context.Background()

	switch command {
	case "add":
		result, err := cni.AddNetworkList(ctx, list, rt)
		if err != nil {
			fail(err)
		}
		if err := result.Print(); err != nil {
			fail(err)
		}
	case "check":
		done(cni.CheckNetworkList(ctx, list, rt))
	case "del":
		done(cni.DelNetworkList(ctx, list, rt))
	case "gc":
		args := &libcni.GCArgs{}
		for _, a := range strings.Split(*valid, ",") {
			if a == "" {
				continue
			}
			id, ifname, ok := strings.Cut(a, "/")
			if !ok {
				fail(fmt.Errorf("--valid: %q is not ID/IFNAME", a))
			}
			args.ValidAttachments = append(args.ValidAttachments, types.GCAttachment{ContainerID: id, IfName: ifname})
		}
		done(cni.GCNetworkList(ctx, list, args))
	case "status":
		done(cni.GetStatusNetworkList(ctx, list))
	default:
		fail(fmt.Errorf("unknown command %q (add, check, del, gc, status)", command))
	}
}

func done(err error) {
	if err != nil {
		fail(err)
	}
}

// fail prints the CNI error object (the plugin's own when libcni passes one
// through) and exits 1.
func fail(err error) {
	out := &types.Error{Msg: err.Error()}
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		out = cniErr
	}
	text, _ := json.Marshal(out)
	fmt.Println(string(text))
	os.Exit(1)
}
