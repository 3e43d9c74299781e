package redact

import "testing"

func TestURL(t *testing.T) {
	for _, c := range []struct{ name, in, want string }{
		{"Empty", "", ""},
		{"NoSecret", "redis://cache:6379/0", "redis://cache:6379/0"},
		{"UserInfoPassword", "postgres://billing:s3cret@db:5432/billing", "postgres://billing:xxxxx@db:5432/billing"},
		{"PasswordLikeQueryParameters", "postgres://db/billing?password=a&sslmode=require&auth_token=b&client_secret=c",
			"postgres://db/billing?auth_token=xxxxx&client_secret=xxxxx&password=xxxxx&sslmode=require"},
		{"Unparsable", "postgres://db:port\x7f/billing", Mark},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := URL(c.in); got != c.want {
				t.Errorf("URL(%q) = %q, want %q", c.in, got, c.want)
			}
		})
	}
}

func TestSecretAndListShowOnlyWhetherSet(t *testing.T) {
	if Secret("") != "" || Secret("sk_test_x") != Mark || List(nil) != "" || List([]string{"whsec_x"}) != Mark {
		t.Errorf(`Secret("") = %q, Secret(set) = %q, List(nil) = %q, List(set) = %q`,
			Secret(""), Secret("sk_test_x"), List(nil), List([]string{"whsec_x"}))
	}
}
