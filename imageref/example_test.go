package imageref_test

import (
	"fmt"

	"github.com/seed-a64a90cf/imagegate/imageref"
)

// The variant is the last segment; everything before it is the id, decoded
// once, so "%2F" belongs to the id and "%25" is a literal '%'.
func ExampleParse() {
	for _, p := range []string{
		"2cdc28f0-017a-49c4-9ed7-87056c83901f/thumbnail",
		"users/alice/avatar.png/public",
		"a%2Fb/public",
		"100%25-real/public",
		"a/../b/public",
		"abc",
	} {
		ref, err := imageref.Parse(p)
		fmt.Printf("%-48s id=%q variant=%q err=%v\n", p, ref.ID, ref.Variant, err)
	}
	// Output:
	// 2cdc28f0-017a-49c4-9ed7-87056c83901f/thumbnail   id="2cdc28f0-017a-49c4-9ed7-87056c83901f" variant="thumbnail" err=<nil>
	// users/alice/avatar.png/public                    id="users/alice/avatar.png" variant="public" err=<nil>
	// a%2Fb/public                                     id="a/b" variant="public" err=<nil>
	// 100%25-real/public                               id="100%-real" variant="public" err=<nil>
	// a/../b/public                                    id="" variant="" err=image id has an empty, '.' or '..' segment
	// abc                                              id="" variant="" err=path must be <id>/<variant>
}

func ExampleEscapePath() {
	fmt.Println(imageref.EscapePath("users/100%/café.png"))
	// Output: users/100%25/caf%C3%A9.png
}
