package armimage

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/flashstation/flashstation/internal/armimage/eeprom"
	"github.com/flashstation/flashstation/serialvault"
	"github.com/flashstation/flashstation/serialvault/vaulttest"
)

func TestGuestServiceURL(t *testing.T) {
	guest, host, err := GuestServiceURL("http://127.0.0.1:41234/v1/")
	must(t, err)
	if guest != "http://10.0.2.100/v1/" || host != "127.0.0.1:41234" {
		t.Errorf("GuestServiceURL = %s, %s", guest, host)
	}
	for _, bad := range []string{"https://127.0.0.1:1/", "http://127.0.0.1/", "::"} {
		if _, _, err := GuestServiceURL(bad); err == nil {
			t.Errorf("GuestServiceURL(%q) took it", bad)
		}
	}
}

// TestWithIdentityWritesTheEEPROM checks the identity disk's facts and
// QEMU's command line: one guestfwd, restricted, the EEPROM read-only and
// before the flashed disk (U-Boot boots virtio 0, the last one given).
func TestWithIdentityWritesTheEEPROM(t *testing.T) {
	key := vaulttest.TestKey(1)
	id := Identity{Serial: "QA-7", Key: key, DeviceService: "http://10.0.2.100/v1/", Headers: map[string]string{"api-key": "k"},
		ConsoleUser: "factory", ConsolePassword: "pw"}
	dir := t.TempDir()
	q, err := QEMU{UBoot: "u-boot.bin", Disk: "/d/disk.img", Serial: "/dev/pts/9", Proxy: "127.0.0.1:5000", Forwarder: "/bin/fwd"}.WithIdentity(dir, id)
	must(t, err)
	data, err := os.ReadFile(filepath.Join(dir, EEPROMFile))
	must(t, err)
	if len(data)%512 != 0 {
		t.Errorf("the EEPROM is %d bytes, not whole sectors", len(data))
	}
	f, err := eeprom.Decode(data)
	must(t, err)
	k, err := serialvault.ParsePrivateKeyPEM([]byte(f.KeyPEM))
	must(t, err)
	if !k.Public().Equal(key.Public()) {
		t.Error("the EEPROM's key is another key")
	}
	f.KeyPEM = ""
	want := eeprom.Facts{Serial: "QA-7", DeviceService: id.DeviceService, Headers: id.Headers, ConsoleUser: "factory", ConsolePassword: "pw"}
	if !reflect.DeepEqual(f, want) {
		t.Errorf("facts %+v, want %+v", f, want)
	}
	args, err := q.Args()
	must(t, err)
	line := strings.Join(args, " ")
	net := args[slices.Index(args, "-netdev")+1]
	if net != "user,id=n,restrict=on,guestfwd=tcp:10.0.2.100:80-cmd:'/bin/fwd' "+ForwardArg+" '127.0.0.1:5000'" {
		t.Errorf("netdev %s", net)
	}
	e, d := strings.Index(line, "file="+q.EEPROM+",format=raw,readonly=on"), strings.Index(line, "file=/d/disk.img")
	if e < 0 || d < e || !strings.Contains(line, "serial="+eeprom.DiskSerial) {
		t.Errorf("disks: %s", line)
	}
	if !strings.Contains(line, "virtio-net-device,netdev=n,mac="+MAC("QA-7")) || MAC("QA-7") == MAC("QA-8") {
		t.Errorf("mac: %s", line)
	}
	if _, err := (QEMU{}).WithIdentity(dir, Identity{}); err == nil {
		t.Error("an identity without a serial")
	}
	if _, err := eeprom.Decode(make([]byte, 512)); err != eeprom.ErrNotEEPROM {
		t.Errorf("a blank disk: %v", err)
	}
}
