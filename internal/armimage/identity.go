package armimage

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"

	"github.com/flashstation/flashstation/internal/armimage/eeprom"
	"github.com/flashstation/flashstation/serialvault"
)

// The guest's network, as QEMU's user networking (slirp) lays it out: the
// board has GuestIP/24 and the gateway GatewayIP; the station's proxy is
// at ProxyGuestAddr, the one address QEMU forwards (guestfwd) to the host.
const (
	GuestIP        = "10.0.2.15"
	GatewayIP      = "10.0.2.2"
	ProxyGuestIP   = "10.0.2.100"
	ProxyGuestPort = 80
)

// ProxyGuestAddr is ProxyGuestIP:ProxyGuestPort.
var ProxyGuestAddr = net.JoinHostPort(ProxyGuestIP, strconv.Itoa(ProxyGuestPort))

// Identity is one board's hardware facts. Every board is flashed with the
// same image; what makes a board itself reaches its init through a small
// read-only virtio disk, its "EEPROM" (the armmp kernel has no qemu_fw_cfg
// driver, built in or as a module, so -fw_cfg cannot carry it).
type Identity struct {
	// Serial is the hardware serial (registration.proposed-serial).
	Serial string
	// Key is the device key. It is made on the host: generating RSA in
	// the guest under QEMU's software emulation takes minutes. A real
	// board's key comes from its secure element, or snapd generates it
	// on first boot.
	Key *serialvault.PrivateKey
	// DeviceService is device-service.url as the guest reaches it (see
	// GuestServiceURL), Headers device-service.headers (e.g. api-key).
	DeviceService string
	Headers       map[string]string
	// ConsoleUser and ConsolePassword are the factory login on lines with
	// capture.method console; without a user the console shows
	// console-conf's "Press enter to configure." (proxy lines).
	ConsoleUser, ConsolePassword string
	// Probes are host:port addresses the guest tries to connect to once
	// its network is up, printing each outcome on the console (a bench
	// check of the network's isolation). Leave empty on boards the
	// station watches.
	Probes []string
}

// GuestServiceURL turns the station proxy's URL on the host loopback
// (e.g. http://127.0.0.1:41234/v1/) into the device-service URL the guest
// uses (http://10.0.2.100/v1/) and the host address QEMU forwards it to
// (127.0.0.1:41234), for QEMU.Proxy.
func GuestServiceURL(hostURL string) (guestURL, hostAddr string, err error) {
	u, err := url.Parse(hostURL)
	if err != nil {
		return "", "", fmt.Errorf("armimage: proxy URL: %w", err)
	}
	if u.Scheme != "http" || u.Port() == "" {
		return "", "", fmt.Errorf("armimage: proxy URL %q: want http://host:port/path", hostURL)
	}
	hostAddr = u.Host
	u.Host = ProxyGuestIP
	if ProxyGuestPort != 80 {
		u.Host = ProxyGuestAddr
	}
	return u.String(), hostAddr, nil
}

// MAC is the board's network MAC address, made from its serial (QEMU would
// give every board 52:54:00:12:34:56): locally administered, QEMU's prefix.
func MAC(serial string) string {
	s := sha256.Sum256([]byte(serial))
	return fmt.Sprintf("52:54:%02x:%02x:%02x:%02x", s[0], s[1], s[2], s[3])
}

// EEPROMFile is the name of the identity disk WithIdentity writes.
const EEPROMFile = "eeprom.img"

// WithIdentity writes id's EEPROM disk into dir (dir/EEPROMFile) and
// returns q with it attached and the board's MAC set from the serial.
func (q QEMU) WithIdentity(dir string, id Identity) (QEMU, error) {
	if id.Serial == "" {
		return q, errors.New("armimage: an identity needs a serial")
	}
	f := eeprom.Facts{
		Serial: id.Serial, DeviceService: id.DeviceService, Headers: id.Headers,
		ConsoleUser: id.ConsoleUser, ConsolePassword: id.ConsolePassword, Probes: id.Probes,
	}
	if id.Key != nil {
		pem, err := id.Key.MarshalPEM()
		if err != nil {
			return q, fmt.Errorf("armimage: device key: %w", err)
		}
		f.KeyPEM = string(pem)
	}
	data, err := eeprom.Encode(f)
	if err != nil {
		return q, fmt.Errorf("armimage: %w", err)
	}
	path := filepath.Join(dir, EEPROMFile)
	if err := os.WriteFile(path, data, 0o600); err != nil {
		return q, fmt.Errorf("armimage: writing the identity: %w", err)
	}
	q.EEPROM = path
	q.MAC = MAC(id.Serial)
	return q, nil
}
