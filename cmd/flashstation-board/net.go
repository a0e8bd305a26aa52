//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// netConfig is the static network QEMU's user networking (slirp) expects.
type netConfig struct {
	ifname  string
	addr    netip.Prefix
	gateway netip.Addr
}

var slirpNet = netConfig{
	ifname:  "eth0",
	addr:    netip.MustParsePrefix("10.0.2.15/24"),
	gateway: netip.MustParseAddr("10.0.2.2"),
}

// netUp brings up lo and the virtio network card with c's address and
// default route (no DHCP: the address is fixed), and returns the card's
// MAC address.
func netUp(c netConfig) (string, error) {
	deadline := time.Now().Add(diskWait) // for the card, then for its link
	for {
		if _, err := os.Stat("/sys/class/net/" + c.ifname); err == nil {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("network: %s did not appear within %v", c.ifname, diskWait)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	defer unix.Close(fd)
	if err := linkUp(fd, "lo"); err != nil {
		return "", err
	}
	ifr, err := unix.NewIfreq(c.ifname)
	if err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	if err := ifr.SetInet4Addr(c.addr.Addr().AsSlice()); err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFADDR, ifr); err != nil {
		return "", fmt.Errorf("network: setting %s's address %v: %w", c.ifname, c.addr, err)
	}
	var m [4]byte
	for i := 0; i < c.addr.Bits(); i++ {
		m[i/8] |= 0x80 >> (i % 8)
	}
	if err := ifr.SetInet4Addr(m[:]); err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFNETMASK, ifr); err != nil {
		return "", fmt.Errorf("network: setting %s's netmask: %w", c.ifname, err)
	}
	if err := linkUp(fd, c.ifname); err != nil {
		return "", err
	}
	if err := addDefaultRoute(c.gateway); err != nil {
		return "", err
	}
	// Wait for the kernel to see the link up (its "link becomes ready"
	// line comes then), as systemd-networkd's wait-online does, so that
	// the line lands before the seeding, not after the login prompt.
	for {
		state, _ := os.ReadFile("/sys/class/net/" + c.ifname + "/operstate")
		if strings.TrimSpace(string(state)) == "up" {
			break
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("network: %s not up within %v (operstate %q)", c.ifname, diskWait, strings.TrimSpace(string(state)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	mac, err := os.ReadFile("/sys/class/net/" + c.ifname + "/address")
	if err != nil {
		return "", fmt.Errorf("network: %w", err)
	}
	return strings.TrimSpace(string(mac)), nil
}

func linkUp(fd int, name string) error {
	ifr, err := unix.NewIfreq(name)
	if err != nil {
		return fmt.Errorf("network: %w", err)
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network: %s's flags: %w", name, err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("network: bringing %s up: %w", name, err)
	}
	return nil
}

// addDefaultRoute adds "default via gw" to the main table over rtnetlink.
func addDefaultRoute(gw netip.Addr) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network: netlink: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("network: netlink: %w", err)
	}
	gw4 := gw.As4()
	attrLen := unix.SizeofRtAttr + 4
	msg := make([]byte, unix.SizeofNlMsghdr+unix.SizeofRtMsg+attrLen)
	hdr := (*unix.NlMsghdr)(unsafe.Pointer(&msg[0]))
	*hdr = unix.NlMsghdr{
		Len: uint32(len(msg)), Type: unix.RTM_NEWROUTE,
		Flags: unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_EXCL, Seq: 1,
	}
	rt := (*unix.RtMsg)(unsafe.Pointer(&msg[unix.SizeofNlMsghdr]))
	*rt = unix.RtMsg{
		Family: unix.AF_INET, Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BOOT,
		Scope: unix.RT_SCOPE_UNIVERSE, Type: unix.RTN_UNICAST,
	}
	at := unix.SizeofNlMsghdr + unix.SizeofRtMsg
	attr := (*unix.RtAttr)(unsafe.Pointer(&msg[at]))
	*attr = unix.RtAttr{Len: uint16(attrLen), Type: unix.RTA_GATEWAY}
	copy(msg[at+unix.SizeofRtAttr:], gw4[:])
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("network: adding the default route: %w", err)
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return fmt.Errorf("network: adding the default route: %w", err)
	}
	if n < unix.SizeofNlMsghdr+4 {
		return fmt.Errorf("network: adding the default route: a %d-byte answer", n)
	}
	ans := (*unix.NlMsghdr)(unsafe.Pointer(&buf[0]))
	if ans.Type == unix.NLMSG_ERROR {
		if code := *(*int32)(unsafe.Pointer(&buf[unix.SizeofNlMsghdr])); code != 0 {
			return fmt.Errorf("network: adding the default route via %v: %w", gw, unix.Errno(-code))
		}
	}
	return nil
}
