package lines

import (
	"fmt"
	"net"
)

// Metrics is the station's Prometheus endpoint (station.metrics in the
// station file; the metrics package serves it).
type Metrics struct {
	// Listen is the host:port of GET /metrics, e.g. 127.0.0.1:9464
	// (empty: no metrics served).
	Listen string
}

// metrics checks station.metrics.listen: a host:port, and not a port one
// of the lines' recording proxies listens on.
func (v *validator) metrics() {
	const path = "station.metrics.listen"
	if v.reported(path) {
		return
	}
	listen := v.st.Metrics.Listen
	if listen == "" {
		if _, given := v.w.pos["station.metrics"]; given {
			v.errorf(path, "give host:port (e.g. 127.0.0.1:9464), or leave station.metrics out to serve no metrics")
		}
		return
	}
	if err := checkListen(listen); err != nil {
		v.errorf(path, "%v", err)
		return
	}
	_, port, _ := net.SplitHostPort(listen)
	for i, l := range v.st.Lines {
		if _, pport, err := net.SplitHostPort(l.Proxy.Listen); err == nil && pport == port {
			p := fmt.Sprintf("lines[%d].proxy.listen", i)
			v.errorf(path, "port %s is the recording proxy's of line %s (%s, line %d): give the metrics another port", port, l.ID, p, v.w.at(p).Line)
			return
		}
	}
}
